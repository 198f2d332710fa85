// Ranks that call different collectives: every rank gets a MismatchError that names both
// calls, never a result, a hang or a "peer lost". Rank 1 is the odd one out; each case runs
// on a communicator of its own, since a mismatch breaks the communicator it happens on.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "multirank/world.h"

using namespace ringlink;
using namespace ringlink::testing;

namespace {

constexpr int kOdd = 1;  // the rank that calls something else

struct Buffers {
  std::vector<float> f = std::vector<float>(4000, 1.0f);
  std::vector<float> out = std::vector<float>(4000 * 8, 0.0f);
};
using Call = std::function<void(Communicator&, Buffers&)>;

// Runs `normal` on every rank but kOdd, which runs `odd`, and expects a MismatchError on every
// rank that names the odd call and the normal one (a rank may hear it from the store, naming
// the pair that found it, before its own check does). With up to 3 ranks every rank checks
// every other's signature, so the call itself fails; with more, a rank whose neighbours agree
// with it may hear of the mismatch only by its next call, which must fail with it.
// `options`, when given, changes each rank's communicator options (options(o, is_odd_rank));
// otherwise every rank uses the environment's.
using SetOptions = std::function<void(Options&, bool odd)>;
void expect_mismatch_everywhere(const Call& normal, const std::string& normal_text, const Call& odd,
                                const std::string& odd_text, const SetOptions& options = nullptr) {
  const int n = world().size();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  // A rank still joining when the others found the mismatch hears it while it joins.
  // The buffers outlive the communicator: a failed call may leave receives posted into them
  // until it closes.
  Buffers b;
  std::unique_ptr<Communicator> c;
  const int me = world().rank();
  std::string what;
  bool raised_by_call = false;
  try {
    Options o = Options::from_environment();
    if (options) options(o, me == kOdd);
    c = std::make_unique<Communicator>(o);
    (me == kOdd ? odd : normal)(*c, b);
  } catch (const MismatchError& e) {
    what = e.what();
    raised_by_call = true;
  } catch (const Error& e) {
    ADD_FAILURE() << "rank " << me << " raised another error kind: " << e.what();
    return;
  }
  if (!raised_by_call) {
    ASSERT_GE(n, 4) << "rank " << me << " returned normally from a mismatched collective";
    try {
      c->barrier();
      ADD_FAILURE() << "rank " << me << ": the next call on a mismatched communicator passed";
    } catch (const MismatchError& e) {
      what = e.what();
    } catch (const Error& e) {
      ADD_FAILURE() << "rank " << me << ": the next call raised another error kind: " << e.what();
      return;
    }
  }
  std::printf("rank %d: %s\n", me, what.c_str());
  EXPECT_NE(what.find(fmt::format("rank {} called {}", kOdd, odd_text)), std::string::npos) << what;
  EXPECT_NE(what.find("called " + normal_text), std::string::npos) << what;
  // A later call fails at once with the same error, and never with a result.
  if (c) {
    EXPECT_THROW(c->barrier(), MismatchError);
  }
}

void allreduce(Communicator& c, Buffers& b, size_t count, DataType type, ReduceOp op) {
  c.allreduce(b.f.data(), b.out.data(), count, type, op);
}
void broadcast(Communicator& c, Buffers& b, size_t count, int root) {
  c.broadcast(b.f.data(), b.f.data(), count, DataType::Float32, root);
}

const std::string kAllreduce = "allreduce(count=1000, float32, sum)";

TEST(Mismatch, DataType) {
  expect_mismatch_everywhere([](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum); },
                             kAllreduce,
                             [](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Int32, ReduceOp::Sum); },
                             "allreduce(count=1000, int32, sum)");
}

TEST(Mismatch, ReduceOp) {
  expect_mismatch_everywhere([](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum); },
                             kAllreduce,
                             [](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Float32, ReduceOp::Max); },
                             "allreduce(count=1000, float32, max)");
}

TEST(Mismatch, Root) {
  expect_mismatch_everywhere([](auto& c, auto& b) { broadcast(c, b, 1000, 0); },
                             "broadcast(count=1000, float32, root=0)", [](auto& c, auto& b) { broadcast(c, b, 1000, 1); },
                             "broadcast(count=1000, float32, root=1)");
}

TEST(Mismatch, ReduceRoot) {
  expect_mismatch_everywhere(
      [](auto& c, auto& b) { c.reduce(b.f.data(), b.out.data(), 1000, DataType::Float32, ReduceOp::Sum, 0); },
      "reduce(count=1000, float32, sum, root=0)",
      [](auto& c, auto& b) { c.reduce(b.f.data(), b.out.data(), 1000, DataType::Float32, ReduceOp::Sum, 1); },
      "reduce(count=1000, float32, sum, root=1)");
}

// A rank that sets another wire format would combine 16-bit values as float32 (or the reverse):
// the format is part of the signature, so the call fails everywhere instead.
TEST(Mismatch, WireFormat) {
  // Large enough for the ring (a small allreduce goes exact with any format).
  const Call call = [](auto& c, auto&) {
    std::vector<float> v(100000, 1.0f);
    c.allreduce(v.data(), v.data(), v.size(), DataType::Float32, ReduceOp::Sum);
  };
  expect_mismatch_everywhere(call, "allreduce(count=100000, float32, sum)", call,
                             "allreduce(count=100000, float32, sum, wire=bf16)",
                             [](Options& o, bool odd) { o.wire_dtype = odd ? WireDtype::BF16 : WireDtype::Off; });
}

TEST(Mismatch, WireFormatsDiffer) {
  const Call call = [](auto& c, auto& b) {
    c.reduce_scatter(b.f.data(), b.out.data(), 500, DataType::Float32, ReduceOp::Avg);
  };
  expect_mismatch_everywhere(call, "reduce_scatter(count=500, float32, avg, wire=fp16)", call,
                             "reduce_scatter(count=500, float32, avg, wire=bf16)",
                             [](Options& o, bool odd) { o.wire_dtype = odd ? WireDtype::BF16 : WireDtype::FP16; });
}

TEST(Mismatch, Count) {
  expect_mismatch_everywhere([](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum); },
                             kAllreduce,
                             [](auto& c, auto& b) { allreduce(c, b, 2000, DataType::Float32, ReduceOp::Sum); },
                             "allreduce(count=2000, float32, sum)");
}

TEST(Mismatch, SmallCount) {
  // Both inside the small allreduce's signature messages (8 and 12 bytes).
  expect_mismatch_everywhere([](auto& c, auto& b) { allreduce(c, b, 2, DataType::Float32, ReduceOp::Sum); },
                             "allreduce(count=2, float32, sum)",
                             [](auto& c, auto& b) { allreduce(c, b, 3, DataType::Float32, ReduceOp::Sum); },
                             "allreduce(count=3, float32, sum)");
}

TEST(Mismatch, SmallAllreduceAgainstBroadcast) {
  expect_mismatch_everywhere([](auto& c, auto& b) { allreduce(c, b, 2, DataType::Float32, ReduceOp::Sum); },
                             "allreduce(count=2, float32, sum)", [](auto& c, auto& b) { broadcast(c, b, 2, 0); },
                             "broadcast(count=2, float32, root=0)");
}

TEST(Mismatch, LargeCount) {
  // Several chunks and pipelined messages on both sides (512 KiB chunks).
  expect_mismatch_everywhere(
      [](auto& c, auto&) {
        std::vector<float> v(1 << 20, 1.0f);
        c.allreduce(v.data(), v.data(), v.size(), DataType::Float32, ReduceOp::Sum);
      },
      "allreduce(count=1048576, float32, sum)",
      [](auto& c, auto&) {
        std::vector<float> v(3 << 19, 1.0f);
        c.allreduce(v.data(), v.data(), v.size(), DataType::Float32, ReduceOp::Sum);
      },
      "allreduce(count=1572864, float32, sum)");
}

TEST(Mismatch, Kind) {
  expect_mismatch_everywhere([](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum); },
                             kAllreduce, [](auto& c, auto& b) { broadcast(c, b, 1000, 0); },
                             "broadcast(count=1000, float32, root=0)");
}

TEST(Mismatch, KindGatherScatter) {
  expect_mismatch_everywhere(
      [](auto& c, auto& b) { c.allgather(b.f.data(), b.out.data(), 1000, DataType::Float32); },
      "allgather(count=1000, float32)",
      [](auto& c, auto& b) { c.reduce_scatter(b.out.data(), b.f.data(), 1000, DataType::Float32, ReduceOp::Sum); },
      "reduce_scatter(count=1000, float32, sum)");
}

TEST(Mismatch, BarrierAgainstAllreduce) {
  expect_mismatch_everywhere([](auto& c, auto&) { c.barrier(); }, "barrier()",
                             [](auto& c, auto& b) { allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum); },
                             kAllreduce);
}

TEST(Mismatch, OrderOfCollectives) {
  // Every rank calls the same two collectives; rank 1 in the other order.
  expect_mismatch_everywhere(
      [](auto& c, auto& b) {
        allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum);
        broadcast(c, b, 1000, 0);
      },
      kAllreduce,
      [](auto& c, auto& b) {
        broadcast(c, b, 1000, 0);
        allreduce(c, b, 1000, DataType::Float32, ReduceOp::Sum);
      },
      "broadcast(count=1000, float32, root=0)");
}

TEST(Mismatch, AgreeingCallsStillPass) {
  // The same call everywhere, after the failures above: a fresh communicator works.
  if (world().size() < 2) GTEST_SKIP() << "needs two ranks";
  Communicator c;
  std::vector<float> v(1000, 1.0f);
  c.allreduce(v.data(), v.data(), v.size(), DataType::Float32, ReduceOp::Sum);
  EXPECT_EQ(v[999], static_cast<float>(c.size()));
}

}  // namespace
