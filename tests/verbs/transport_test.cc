// The verbs transport over the software verbs, two ranks in one process: messages of every size
// bitwise, many in flight with different tags (more than the CTS FIFO holds), posting order per
// tag, striping over several QPs, too-long messages, the MR cache, and each injected fault
// turning into the right typed error within the deadline.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <random>
#include <thread>

#include "ringlink/error.h"
#include "transport.h"
#include "transport/verbs/soft/soft_verbs.h"
#include "transport/verbs/verbs_transport.h"
#include "transport_pair.h"

using namespace std::chrono_literals;
using namespace ringlink;
using Clock = std::chrono::steady_clock;

namespace {

using ringlink::testing::pattern;
using Pair = ringlink::testing::TransportPair;

Options soft_options(int qps = 1) { return ringlink::testing::soft_verbs_options(qps); }

class Sizes : public ::testing::TestWithParam<size_t> {};

TEST_P(Sizes, BothWaysBitwise) {
  const size_t n = GetParam();
  Pair p;
  auto a = pattern(n, 1), b = pattern(n, 2);
  std::vector<uint8_t> ra(n + 1, 0xee), rb(n + 1, 0xee);  // one extra byte: must stay untouched
  auto r0 = p.c[0]->irecv(ra.data(), n, nullptr, 5);
  auto r1 = p.c[1]->irecv(rb.data(), n, nullptr, 5);
  auto s0 = p.c[0]->isend(a.data(), n, nullptr, 5);
  auto s1 = p.c[1]->isend(b.data(), n, nullptr, 5);
  ASSERT_TRUE(p.drive({r0.get(), r1.get(), s0.get(), s1.get()}));
  EXPECT_EQ(r0->bytes(), n);
  EXPECT_EQ(r1->bytes(), n);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), ra.begin()));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), rb.begin()));
  EXPECT_EQ(ra[n], 0xee);
  EXPECT_EQ(rb[n], 0xee);
}

INSTANTIATE_TEST_SUITE_P(Verbs, Sizes,
                         ::testing::Values(0, 1, 8, 63, 64, 65, 127, 128, 129, 4096, 65536, (512u << 10) - 1,
                                           512u << 10, (3u << 20) + 7, 64u << 20),
                         [](const auto& test) { return std::to_string(test.param) + "B"; });

TEST(VerbsTransport, ManyInFlightAcrossTagsAndSizesWrapTheFifo) {
  Pair p(2);
  constexpr int kMessages = 700;  // several laps of the 256-entry CTS FIFO
  std::mt19937 rng(7);
  std::vector<size_t> sizes(kMessages);
  for (auto& s : sizes) {
    int pick = static_cast<int>(rng() % 10);
    s = pick < 6 ? rng() % 300 : pick < 9 ? rng() % 70000 : rng() % (3u << 20);
  }
  std::vector<std::vector<uint8_t>> out(kMessages), in(kMessages);
  std::vector<std::unique_ptr<Request>> reqs;
  // Receives in one order, sends in another: tags decide.
  std::vector<int> order(kMessages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  for (int i : order) {
    in[i].assign(sizes[i], 0);
    reqs.push_back(p.c[1]->irecv(in[i].data(), sizes[i], nullptr, 1000 + i));
  }
  std::shuffle(order.begin(), order.end(), rng);
  for (int i : order) {
    out[i] = pattern(sizes[i], i);
    reqs.push_back(p.c[0]->isend(out[i].data(), sizes[i], nullptr, 1000 + i));
  }
  ASSERT_TRUE(p.drive_all(reqs, 60000ms));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(in[i], out[i]) << "message " << i << ", " << sizes[i] << " bytes";
}

TEST(VerbsTransport, SameTagCompletesInPostingOrder) {
  Pair p(4);
  constexpr int kMessages = 600;
  std::vector<uint32_t> got(kMessages, 0), sent(kMessages);
  std::vector<std::unique_ptr<Request>> recvs, sends;
  for (int i = 0; i < kMessages; ++i) recvs.push_back(p.c[1]->irecv(&got[i], 4, nullptr, 3));
  for (int i = 0; i < kMessages; ++i) {
    sent[i] = 0xab000000u + static_cast<uint32_t>(i);
    sends.push_back(p.c[0]->isend(&sent[i], 4, nullptr, 3));
  }
  // A later receive of the tag never reports completion before an earlier one.
  auto deadline = Clock::now() + 20s;
  int completed = 0;
  while (completed < kMessages && Clock::now() < deadline) {
    p.t[0]->progress();
    p.t[1]->progress();
    for (auto& s : sends) s->test();
    for (int i = completed; i < kMessages && recvs[i]->test(); ++i) completed = i + 1;
    for (int i = completed + 1; i < kMessages; ++i) ASSERT_FALSE(recvs[i]->test()) << i << " before " << completed;
  }
  ASSERT_EQ(completed, kMessages);
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(got[i], sent[i]);
}

TEST(VerbsTransport, SmallSendsCompleteBeforeTheReceiveIsPosted) {
  // Both ranks send first and receive after (fine with eager delivery, as over UCX).
  Pair p;
  uint64_t out[2] = {11, 22}, in[2] = {0, 0};
  auto s0 = p.c[0]->isend(&out[0], 8, nullptr, 1);
  auto s1 = p.c[1]->isend(&out[1], 8, nullptr, 1);
  ASSERT_TRUE(p.drive({s0.get(), s1.get()}, 2000ms)) << "a small send needs no posted receive";
  auto r0 = p.c[0]->irecv(&in[0], 8, nullptr, 1);
  auto r1 = p.c[1]->irecv(&in[1], 8, nullptr, 1);
  ASSERT_TRUE(p.drive({r0.get(), r1.get()}, 2000ms));
  EXPECT_EQ(in[0], 22u);
  EXPECT_EQ(in[1], 11u);
}

TEST(VerbsTransport, EagerAndRendezvousMessagesOfOneTagStayInOrder) {
  Pair p(2);
  std::mt19937 rng(3);
  // Many more small messages than eager credits, mixed with large ones, sent before, while and
  // after the receives are posted (so clear-to-sends and eager messages cross each other).
  constexpr int kMessages = 400;
  std::vector<size_t> sizes(kMessages);
  for (auto& s : sizes) s = rng() % 4 == 0 ? 2000 + rng() % 200000 : rng() % 1025;
  std::vector<std::vector<uint8_t>> out(kMessages), in(kMessages);
  std::vector<std::unique_ptr<Request>> reqs;
  int posted_recv = 0, posted_send = 0;
  while (posted_recv < kMessages || posted_send < kMessages) {
    bool do_send = posted_recv == kMessages || (posted_send < kMessages && rng() % 2 == 0);
    if (do_send) {
      out[posted_send] = pattern(sizes[posted_send], posted_send);
      reqs.push_back(p.c[0]->isend(out[posted_send].data(), sizes[posted_send], nullptr, 8));
      ++posted_send;
    } else {
      in[posted_recv].assign(sizes[posted_recv], 0);
      reqs.push_back(p.c[1]->irecv(in[posted_recv].data(), sizes[posted_recv], nullptr, 8));
      ++posted_recv;
    }
    if (rng() % 3 == 0) {
      p.t[0]->progress();
      p.t[1]->progress();
    }
  }
  ASSERT_TRUE(p.drive_all(reqs, 60000ms));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(in[i], out[i]) << "message " << i << ", " << sizes[i] << " bytes";
}

TEST(VerbsTransport, ClearToSendsOvertakenByEagerMessagesFreeTheirSlots) {
  // Receive posted, send right after: the send often goes eagerly before the clear-to-send
  // reaches it, and the clear-to-send is voided. Far more rounds than FIFO slots: a slot that
  // was never freed would stall the loop.
  Pair p;
  for (int i = 0; i < 1500; ++i) {
    uint32_t v = static_cast<uint32_t>(i), w = 0;
    auto r = p.c[1]->irecv(&w, 4, nullptr, 2);
    auto s = p.c[0]->isend(&v, 4, nullptr, 2);
    ASSERT_TRUE(p.drive({r.get(), s.get()}, 5000ms)) << "round " << i;
    ASSERT_EQ(w, v);
  }
}

TEST(VerbsTransport, StripesOverQueuePairsAndReportsTheSize) {
  Pair p(4);
  const size_t n = (16u << 20) + 12345, posted = 20u << 20;
  auto a = pattern(n, 9);
  std::vector<uint8_t> r(posted, 0);
  auto rr = p.c[1]->irecv(r.data(), posted, nullptr, 1);
  auto ss = p.c[0]->isend(a.data(), n, nullptr, 1);
  ASSERT_TRUE(p.drive({rr.get(), ss.get()}));
  EXPECT_EQ(rr->bytes(), n) << "a shorter message reports its own size";
  EXPECT_TRUE(std::equal(a.begin(), a.end(), r.begin()));
  EXPECT_EQ(r[n], 0);
}

TEST(VerbsTransport, TooLongMessageFailsOnlyThatReceive) {
  Pair p;
  std::vector<uint8_t> big(1000, 1), small(10, 0);
  auto rr = p.c[1]->irecv(small.data(), small.size(), nullptr, 4);
  auto ss = p.c[0]->isend(big.data(), big.size(), nullptr, 4);
  try {
    p.drive({rr.get(), ss.get()});
    FAIL() << "a 1000-byte message fit a 10-byte receive";
  } catch (const MismatchError& e) {
    EXPECT_EQ(e.rank(), 1);
    EXPECT_EQ(e.peer(), 0);
    EXPECT_NE(std::string(e.what()).find("1000 bytes, larger than the 10 bytes posted"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(p.drive({ss.get()})) << "the sender completes";
  EXPECT_EQ(small[0], 0) << "nothing landed";
  // The connection still works.
  uint64_t v = 77, w = 0;
  auto r2 = p.c[1]->irecv(&w, 8, nullptr, 4);
  auto s2 = p.c[0]->isend(&v, 8, nullptr, 4);
  ASSERT_TRUE(p.drive({r2.get(), s2.get()}));
  EXPECT_EQ(w, 77u);
}

TEST(VerbsTransport, MrCacheRegistersUserBuffersOnceAndHonoursInvalidation) {
  Pair p;
  std::vector<uint8_t> a(1 << 20, 3), r(1 << 20);
  auto& cache = p.info(0).mr_cache();
  auto roundtrip = [&] {
    auto rr = p.c[1]->irecv(r.data(), r.size(), nullptr, 2);
    auto ss = p.c[0]->isend(a.data(), a.size(), nullptr, 2);
    ASSERT_TRUE(p.drive({rr.get(), ss.get()}));
  };
  roundtrip();
  auto first = cache.stats();
  roundtrip();
  roundtrip();
  auto later = cache.stats();
  EXPECT_EQ(later.misses, first.misses) << "the same buffer is not registered again";
  EXPECT_EQ(later.hits, first.hits + 2);
  // A part of the buffer hits the same entry.
  auto rr = p.c[1]->irecv(r.data(), 100, nullptr, 2);
  auto ss = p.c[0]->isend(a.data() + 4096, 100, nullptr, 2);
  ASSERT_TRUE(p.drive({rr.get(), ss.get()}));
  EXPECT_EQ(cache.stats().misses, first.misses);
  // Invalidated (say, the memory was freed): registered again next time.
  EXPECT_GE(verbs::invalidate_registrations(a.data(), a.size()), 1u);
  roundtrip();
  EXPECT_EQ(cache.stats().misses, first.misses + 1);
  // Explicit regions are used as given.
  auto region = p.t[0]->register_memory(a.data(), a.size(), MemoryKind::Host);
  auto misses = cache.stats().misses;
  auto rr2 = p.c[1]->irecv(r.data(), r.size(), nullptr, 2);
  auto ss2 = p.c[0]->isend(a.data(), a.size(), region.get(), 2);
  ASSERT_TRUE(p.drive({rr2.get(), ss2.get()}));
  EXPECT_EQ(cache.stats().misses, misses);
  std::vector<uint8_t> elsewhere(64);
  EXPECT_THROW(p.c[0]->isend(elsewhere.data(), 64, region.get(), 2), InvalidArgumentError);
}

TEST(VerbsTransport, WithoutTheCacheUserBuffersAreRegisteredPerMessage) {
  Options o = soft_options();
  o.ib_mr_cache = false;  // RINGLINK_IB_MR_CACHE=0
  Pair p(o);
  std::vector<uint8_t> a(1 << 20, 4), r(1 << 20);
  for (int i = 0; i < 3; ++i) {
    auto rr = p.c[1]->irecv(r.data(), r.size(), nullptr, 2);
    auto ss = p.c[0]->isend(a.data(), a.size(), nullptr, 2);
    ASSERT_TRUE(p.drive({rr.get(), ss.get()}));
  }
  EXPECT_EQ(r, a);
  EXPECT_EQ(p.info(0).mr_cache().stats().misses, 0u) << "user buffers bypass the cache";
  EXPECT_EQ(p.info(0).mr_cache().stats().entries, 0u);
}

// An injected fault must surface as the right typed error on the rank that sees it, naming the
// peer and the operation, well within the deadline, and never hang the other rank either.
struct FaultCase {
  const char* spec;
  ErrorKind sender_kind;
  const char* sender_text;
  bool receiver_fails;  // a vanished peer goes unnoticed by a rank with nothing outstanding to it
};

class Faults : public ::testing::TestWithParam<FaultCase> {};

TEST_P(Faults, BecomeTypedErrorsWithinTheDeadline) {
  const FaultCase& fc = GetParam();
  Pair p;
  // Warm up: one message each way, so the fault hits a data write mid-stream.
  uint64_t x = 1, y = 0;
  {
    auto r = p.c[1]->irecv(&y, 8, nullptr, 1);
    auto s = p.c[0]->isend(&x, 8, nullptr, 1);
    ASSERT_TRUE(p.drive({r.get(), s.get()}));
  }
  verbs::soft::set_fault(p.info(0).verbs_context(), verbs::soft::parse_fault(fc.spec));
  std::vector<uint8_t> a(1 << 20, 5), r(1 << 20);
  auto rr = p.c[1]->irecv(r.data(), r.size(), nullptr, 9);
  auto ss = p.c[0]->isend(a.data(), a.size(), nullptr, 9);
  auto t0 = Clock::now();
  std::optional<ErrorKind> sender_error, receiver_error;
  std::string sender_what, receiver_what;
  while (Clock::now() - t0 < (fc.receiver_fails ? 5s : 1s) && (!sender_error || !receiver_error)) {
    p.t[0]->progress();
    p.t[1]->progress();
    if (!sender_error) try {
        if (ss->test()) FAIL() << "the send succeeded despite " << fc.spec;
      } catch (const Error& e) {
        sender_error = e.kind();
        sender_what = e.what();
      }
    if (!receiver_error) try {
        if (rr->test()) FAIL() << "the receive succeeded despite " << fc.spec;
      } catch (const Error& e) {
        receiver_error = e.kind();
        receiver_what = e.what();
      }
  }
  auto took = Clock::now() - t0;
  ASSERT_TRUE(sender_error) << fc.spec << ": the sender saw no error";
  EXPECT_EQ(*sender_error, fc.sender_kind) << sender_what;
  EXPECT_NE(sender_what.find("rank 0"), std::string::npos) << sender_what;
  EXPECT_NE(sender_what.find("with peer 1"), std::string::npos) << sender_what;
  EXPECT_NE(sender_what.find("in send"), std::string::npos) << sender_what;
  EXPECT_NE(sender_what.find(fc.sender_text), std::string::npos) << sender_what;
  EXPECT_NE(sender_what.find("vendor error"), std::string::npos) << sender_what;
  if (fc.receiver_fails) {
    ASSERT_TRUE(receiver_error) << fc.spec << ": the receiver saw no error";
    EXPECT_NE(receiver_what.find("with peer 0"), std::string::npos) << receiver_what;
    EXPECT_NE(receiver_what.find("in recv"), std::string::npos) << receiver_what;
    EXPECT_LT(took, 2s) << "errors must not wait for a silence deadline";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Soft, Faults,
    ::testing::Values(FaultCase{"bad-rkey", ErrorKind::Transport, "remote access error", true},
                      FaultCase{"oob-write", ErrorKind::Transport, "access outside the memory region", true},
                      FaultCase{"drop-peer", ErrorKind::PeerLost, "retries exhausted", false}),
    [](const auto& test) {
      std::string n = test.param.spec;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(VerbsTransport, PortDownIsReportedAsAnEvent) {
  Pair p;
  verbs::soft::set_fault(p.info(0).verbs_context(), verbs::soft::parse_fault("port-down"));
  uint64_t x = 1, y = 0;
  auto r = p.c[1]->irecv(&y, 8, nullptr, 1);
  auto s = p.c[0]->isend(&x, 8, nullptr, 1);
  // The write fails at once (retries exhausted); the port event arrives through the event
  // thread, and from then on every operation of the transport names it.
  std::string what;
  auto t0 = Clock::now();
  while (Clock::now() - t0 < 2s && what.find("went down") == std::string::npos) {
    p.t[0]->progress();
    p.t[1]->progress();
    auto later = p.c[0]->isend(&x, 8, nullptr, 2);
    try {
      later->test();
    } catch (const TransportError& e) {
      what = e.what();
    } catch (const PeerLostError&) {
    }
  }
  EXPECT_NE(what.find("port soft:1 went down"), std::string::npos) << what;
  EXPECT_LT(Clock::now() - t0, 2s);
}

TEST(VerbsTransport, FaultOptionIsArmedOnlyForTheRankItNames) {
  // Options::soft_verbs_fault (RINGLINK_SOFT_VERBS_FAULT) "KIND@R" arms the fault in rank R's
  // transport, by the rank the transport serves.
  Options for_rank_1 = soft_options(), for_rank_0 = soft_options();
  for_rank_1.soft_verbs_fault = "drop-peer@1";
  for_rank_0.soft_verbs_fault = "drop-peer@0";
  std::vector<uint8_t> a = pattern(4096, 1), b(4096);
  {
    Pair p(for_rank_1, soft_options());  // rank 0 holds a fault meant for rank 1: nothing happens
    auto r = p.c[1]->irecv(b.data(), b.size(), nullptr, 1);
    auto s = p.c[0]->isend(a.data(), a.size(), nullptr, 1);
    ASSERT_TRUE(p.drive({r.get(), s.get()}));
    EXPECT_EQ(a, b);
  }
  Pair p(for_rank_0, soft_options());  // rank 0's own: its first send breaks its connections
  auto r = p.c[1]->irecv(b.data(), b.size(), nullptr, 2);
  auto s = p.c[0]->isend(a.data(), a.size(), nullptr, 2);
  try {
    p.drive({s.get()}, 2000ms);
    FAIL() << "rank 0's send succeeded despite drop-peer@0";
  } catch (const PeerLostError& e) {
    EXPECT_EQ(e.rank(), 0);
    EXPECT_EQ(e.peer(), 1);
  }
}

TEST(VerbsTransport, DifferentQueuePairCountsAreAMismatch) {
  Options a = soft_options(1), b = soft_options(2);
  TransportSetup s0{0, 2, 0, 2, a}, s1{1, 2, 1, 2, b};
  auto t0 = create_verbs_transport(s0);
  auto t1 = create_verbs_transport(s1);
  auto e1 = t1->endpoint_info(0);
  EXPECT_THROW(t0->connect(1, e1), MismatchError);
  std::vector<std::byte> junk(10);
  auto t2 = create_verbs_transport(s1);
  t2->endpoint_info(0);
  EXPECT_THROW(t2->connect(0, junk), MismatchError);
}

TEST(TransportSelection, VerbsOrAClearError) {
  Options o = soft_options();
  TransportSetup s{0, 2, 0, 2, o};
  auto soft = create_transport(s);
  EXPECT_EQ(soft->name(), "verbs/soft");

  Options missing;
  missing.transport = TransportKind::Verbs;
  missing.ib_hca = "mlx5_77";
  TransportSetup s2{0, 2, 0, 2, missing};
  try {
    create_transport(s2);
    FAIL() << "no such HCA here";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("verbs unavailable: "), std::string::npos) << e.what();
  }

  Options autod;
  autod.transport = TransportKind::Auto;
  TransportSetup s3{0, 2, 0, 2, autod};
  EXPECT_EQ(create_transport(s3)->name().rfind("ucx", 0), 0u) << "no RDMA device here: UCX";
  autod.ib_hca = "soft";
  TransportSetup s4{0, 2, 0, 2, autod};
  EXPECT_EQ(create_transport(s4)->name(), "verbs/soft");
}

}  // namespace
