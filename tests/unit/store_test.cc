// The rendezvous store in one process: a server on a free loopback port, clients in threads;
// and its wire format's frame reader. Hostile peers are in store_hostile_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/store.h"
#include "bootstrap/store_keys.h"
#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "ringlink/error.h"

using namespace ringlink;
using namespace std::chrono_literals;
using store_keys::counter;
using store_keys::owned;

namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<StoreServer>("127.0.0.1", 0, "tok", kWorld);
    // A failed job's store lingers for late ranks; tests need not wait for it.
    server_->set_drain_timeout(std::chrono::milliseconds(100));
  }
  StoreIdentity id(int rank, uint32_t epoch = 0, std::string token = "tok", int world = kWorld) {
    return StoreIdentity{"127.0.0.1", server_->port(), std::move(token), rank, world, epoch};
  }
  std::unique_ptr<StoreClient> client(int rank, uint32_t epoch = 0) {
    return std::make_unique<StoreClient>(id(rank, epoch), Deadline::after(2s));
  }
  static constexpr int kWorld = 3;
  std::unique_ptr<StoreServer> server_;
};

TEST_F(StoreTest, SetGetAddCheck) {
  auto a = client(0), b = client(1);
  a->set(owned(0, "k"), "value");
  EXPECT_EQ(b->get(owned(0, "k"), 1s), "value");
  EXPECT_TRUE(b->check(owned(0, "k")));
  EXPECT_FALSE(b->check(owned(0, "absent")));
  EXPECT_EQ(a->add(counter("n"), 2), 2);
  EXPECT_EQ(b->add(counter("n"), 5), 7);
  EXPECT_EQ(a->get(counter("n"), 1s), "7");
  // A rank's own keys take a counter too.
  EXPECT_EQ(b->add(owned(1, "mine"), -3), -3);
}

TEST_F(StoreTest, BarrierWaitsForEveryRankAndNamesTheMissingOnes) {
  auto a = client(0), b = client(1), c = client(2);
  auto waiting = std::async(std::launch::async, [&] { a->barrier("all", 5s); });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(waiting.wait_for(0s), std::future_status::timeout) << "the barrier let rank 0 through alone";
  auto second = std::async(std::launch::async, [&] { b->barrier("all", 5s); });
  c->barrier("all", 5s);
  EXPECT_NO_THROW(waiting.get());
  EXPECT_NO_THROW(second.get());
  try {
    a->barrier("partial", 300ms);
    FAIL() << "a barrier nobody else reached returned";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.peer(), 1) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank(s) 1, 2 never reached barrier 'partial'"), std::string::npos)
        << e.what();
  }
}

TEST_F(StoreTest, JoinWaitGivesEachRanksHost) {
  auto a = client(0), b = client(1), c = client(2);
  a->wait_for_all_ranks(2s);
  EXPECT_EQ(a->hosts(), (std::vector<std::string>{"127.0.0.1", "127.0.0.1", "127.0.0.1"}));
}

TEST_F(StoreTest, ReportedFailureReachesEveryWatcherWithItsKindAndCulprit) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  WatchChannel wb(id(1), Deadline::after(2s));
  b->report_failure("rank 1 called allreduce(count=2); rank 0 called allreduce(count=1)", 0);
  for (WatchChannel* w : {&wa, &wb}) {
    auto ev = w->read_event(Deadline::after(2s));
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->what, WatchChannel::Event::Kind::Failed);
    EXPECT_EQ(ev->error, ErrorKind::Mismatch);
    EXPECT_EQ(ev->rank, 0);
    EXPECT_NE(ev->message.find("allreduce(count=2)"), std::string::npos) << ev->message;
  }
  // A second report is acknowledged and changes nothing; requests get the first failure.
  EXPECT_NO_THROW(a->report_failure("later", 1));
  try {
    a->get(owned(0, "x"), 1s);
    FAIL() << "a request succeeded in a failed epoch";
  } catch (const MismatchError& e) {
    EXPECT_NE(std::string(e.what()).find("count=2"), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, GetWaitsForALaterSet) {
  auto a = client(0), b = client(1);
  auto got = std::async(std::launch::async, [&] { return b->get(owned(0, "late"), 5s); });
  std::this_thread::sleep_for(100ms);
  a->set(owned(0, "late"), "here");
  EXPECT_EQ(got.get(), "here");
}

TEST_F(StoreTest, GetTimesOutWithinItsDeadline) {
  auto a = client(0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(a->get(owned(1, "never"), 300ms), TimeoutError);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST_F(StoreTest, EpochsAreSeparateKeySpaces) {
  auto a0 = client(0, 0), a1 = client(0, 1);
  a0->set(owned(0, "k"), "epoch0");
  a1->set(owned(0, "k"), "epoch1");
  EXPECT_EQ(client(1, 0)->get(owned(0, "k"), 1s), "epoch0");
  EXPECT_EQ(client(1, 1)->get(owned(0, "k"), 1s), "epoch1");
}

TEST_F(StoreTest, JoinTimeoutNamesTheMissingRank) {
  auto a = client(0), b = client(1);  // rank 2 never joins
  try {
    a->wait_for_all_ranks(300ms);
    FAIL() << "wait_for_all_ranks returned without rank 2";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.peer(), 2) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank(s) 2 never joined"), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, JoinCompletesWhenTheLastRankArrives) {
  auto a = client(0), b = client(1);
  auto done = std::async(std::launch::async, [&] { a->wait_for_all_ranks(5s); });
  std::this_thread::sleep_for(100ms);
  auto c = client(2);
  EXPECT_NO_THROW(done.get());
}

TEST_F(StoreTest, WrongTokenIsRefused) {
  try {
    StoreClient bad(id(1, 0, "not-the-token"), Deadline::after(2s));
    FAIL() << "a client with a wrong token was accepted";
  } catch (const InvalidArgumentError& e) {
    EXPECT_EQ(e.peer(), 0) << e.what();  // the store's proof did not check out
    EXPECT_NE(std::string(e.what()).find("wrong job token"), std::string::npos) << e.what();
  }
  // The job itself is unaffected, and rank 1's id is still free.
  auto a = client(0), b = client(1);
  a->set(owned(0, "still"), "fine");
  EXPECT_EQ(b->get(owned(0, "still"), 1s), "fine");
}

TEST_F(StoreTest, WorldSizeDisagreementFailsEveryone) {
  auto a = client(0);
  auto waiting = std::async(std::launch::async, [&] { a->wait_for_all_ranks(5s); });
  std::this_thread::sleep_for(100ms);
  EXPECT_THROW(StoreClient(id(1, 0, "tok", kWorld + 1), Deadline::after(2s)), MismatchError);
  try {
    waiting.get();
    FAIL() << "rank 0 kept waiting after a WORLD_SIZE mismatch";
  } catch (const MismatchError& e) {
    EXPECT_EQ(e.peer(), 1) << "the rank that disagrees: " << e.what();
    EXPECT_NE(std::string(e.what()).find("WORLD_SIZE"), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, DuplicateRankFailsEveryone) {
  auto a = client(0), b = client(1);
  try {
    StoreClient again(id(1), Deadline::after(2s));
    FAIL() << "rank 1 joined twice";
  } catch (const MismatchError& e) {
    EXPECT_NE(std::string(e.what()).find("rank id 1 is used twice"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a->get(owned(1, "anything"), 1s), MismatchError);
}

TEST_F(StoreTest, RankOutOfRangeIsRefused) {
  EXPECT_THROW(StoreClient(id(kWorld), Deadline::after(2s)), MismatchError);
}

TEST_F(StoreTest, WatchReportsARankThatVanishes) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  auto wb = std::make_unique<WatchChannel>(id(1), Deadline::after(2s));
  wb.reset();  // closes without BYE: rank 1 "died"
  auto ev = wa.read_event(Deadline::after(2s));
  ASSERT_TRUE(ev) << "no event within 2 s";
  EXPECT_EQ(ev->what, WatchChannel::Event::Kind::Lost);
  EXPECT_EQ(ev->rank, 1);
  EXPECT_NE(ev->message.find("rank 1 exited or was killed"), std::string::npos) << ev->message;
}

TEST_F(StoreTest, WatchIsQuietAfterBye) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  {
    WatchChannel wb(id(1), Deadline::after(2s));
    wb.bye();
  }
  // Nothing but heartbeats may arrive: rank 1 left cleanly.
  EXPECT_FALSE(wa.read_event(Deadline::after(300ms)));
}

TEST_F(StoreTest, RequestsAfterARankDiedArePeerLostNamingIt) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  auto wb = std::make_unique<WatchChannel>(id(1), Deadline::after(2s));
  auto waiting = std::async(std::launch::async, [&] { return a->get(owned(2, "never"), 5s); });
  std::this_thread::sleep_for(100ms);
  wb.reset();  // rank 1 "dies" while rank 0 waits
  try {
    waiting.get();
    FAIL() << "the wait outlived rank 1";
  } catch (const PeerLostError& e) {
    EXPECT_EQ(e.peer(), 1) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 1 exited or was killed"), std::string::npos) << e.what();
  }
  // Every later request of the epoch hears the same, with the same kind and culprit.
  try {
    a->add(counter("n"), 1);
    FAIL() << "add succeeded in a failed epoch";
  } catch (const PeerLostError& e) {
    EXPECT_EQ(e.peer(), 1) << e.what();
  }
}

TEST(FrameReader, ReassemblesFramesFedByteByByte) {
  std::string bytes = wire::frame("hello") + wire::frame("") + wire::frame("world!");
  wire::FrameReader reader(64);
  std::vector<std::string> got;
  for (char c : bytes) {
    reader.append(std::string_view(&c, 1));
    while (auto f = reader.next()) got.push_back(*f);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"hello", "", "world!"}));
}

TEST(FrameReader, WantedIsWhatCompletesTheHeaderOrPayload) {
  wire::FrameReader reader(64);
  std::string f = wire::frame("abc");
  EXPECT_EQ(reader.wanted(), 4u);
  reader.append(f.substr(0, 2));
  EXPECT_FALSE(reader.next());
  EXPECT_EQ(reader.wanted(), 2u);
  reader.append(f.substr(2, 3));
  EXPECT_FALSE(reader.next());
  EXPECT_EQ(reader.wanted(), 2u);
  reader.append(f.substr(5));
  EXPECT_EQ(reader.next(), "abc");
  EXPECT_EQ(reader.wanted(), 4u);
}

TEST(FrameReader, RefusesAFrameOverItsLimitFromTheHeaderAlone) {
  wire::FrameReader reader(8);
  reader.append(wire::frame("12345678"));
  EXPECT_EQ(reader.next(), "12345678");
  reader.append(wire::frame("123456789").substr(0, wire::kFrameHeaderBytes));
  EXPECT_THROW(reader.next(), wire::FormatError);
}

TEST(WireReader, AFieldPastTheEndIsMalformed) {
  std::string payload = wire::Writer().u32(100).take();  // a string that claims 100 bytes and has none
  wire::Reader r(payload);
  EXPECT_THROW(r.str(), wire::FormatError);
  wire::Reader empty("");
  EXPECT_THROW(empty.u8(), wire::FormatError);
}

TEST(StoreClientAlone, UnreachableServerTimesOutNamingRankZero) {
  int port = net::pick_free_port();  // nothing listens there
  auto t0 = std::chrono::steady_clock::now();
  try {
    StoreClient c(StoreIdentity{"127.0.0.1", port, "tok", 1, 2, 0}, Deadline::after(500ms));
    FAIL() << "connected to nothing";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.peer(), 0);
    EXPECT_NE(std::string(e.what()).find("rendezvous store of rank 0"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
