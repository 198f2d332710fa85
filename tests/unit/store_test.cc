// The rendezvous store in one process: a server on a free loopback port, clients in threads;
// and its wire format's frame reader.
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/store.h"
#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "ringlink/error.h"

using namespace ringlink;
using namespace std::chrono_literals;

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
  a->set("k", "value");
  EXPECT_EQ(b->get("k", 1s), "value");
  EXPECT_TRUE(b->check("k"));
  EXPECT_FALSE(b->check("absent"));
  EXPECT_EQ(a->add("n", 2), 2);
  EXPECT_EQ(b->add("n", 5), 7);
  EXPECT_EQ(a->get("n", 1s), "7");
}

TEST_F(StoreTest, GetWaitsForALaterSet) {
  auto a = client(0), b = client(1);
  auto got = std::async(std::launch::async, [&] { return b->get("late", 5s); });
  std::this_thread::sleep_for(100ms);
  a->set("late", "here");
  EXPECT_EQ(got.get(), "here");
}

TEST_F(StoreTest, GetTimesOutWithinItsDeadline) {
  auto a = client(0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(a->get("never", 300ms), TimeoutError);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST_F(StoreTest, EpochsAreSeparateKeySpaces) {
  auto a0 = client(0, 0), a1 = client(0, 1);
  a0->set("k", "epoch0");
  a1->set("k", "epoch1");
  EXPECT_EQ(client(1, 0)->get("k", 1s), "epoch0");
  EXPECT_EQ(client(1, 1)->get("k", 1s), "epoch1");
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
    EXPECT_EQ(e.peer(), 0) << e.what();  // refused by rank 0's store
    EXPECT_NE(std::string(e.what()).find("wrong job token"), std::string::npos) << e.what();
  }
  // The job itself is unaffected.
  auto a = client(0);
  a->set("still", "fine");
  EXPECT_EQ(a->get("still", 1s), "fine");
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
  EXPECT_THROW(a->get("anything", 1s), MismatchError);
}

TEST_F(StoreTest, RankOutOfRangeIsRefused) {
  EXPECT_THROW(StoreClient(id(kWorld), Deadline::after(2s)), MismatchError);
}

TEST_F(StoreTest, WatchReportsARankThatVanishes) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  auto wb = std::make_unique<WatchChannel>(id(1), Deadline::after(2s));
  wb.reset();  // closes without BYE: rank 1 "died"
  WatchChannel::Event ev = wa.read_event();
  EXPECT_TRUE(ev.lost);
  EXPECT_EQ(ev.rank, 1);
  EXPECT_NE(ev.message.find("rank 1 exited or was killed"), std::string::npos) << ev.message;
}

TEST_F(StoreTest, WatchIsQuietAfterBye) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  {
    WatchChannel wb(id(1), Deadline::after(2s));
    wb.bye();
  }
  // Nothing may arrive: rank 1 left cleanly. The server's closing, at the end, is the only event.
  pollfd p{wa.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 300), 0);
}

TEST_F(StoreTest, RequestsAfterARankDiedArePeerLostNamingIt) {
  auto a = client(0), b = client(1);
  WatchChannel wa(id(0), Deadline::after(2s));
  auto wb = std::make_unique<WatchChannel>(id(1), Deadline::after(2s));
  auto waiting = std::async(std::launch::async, [&] { return a->get("never", 5s); });
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
    a->add("n", 1);
    FAIL() << "add succeeded in a failed epoch";
  } catch (const PeerLostError& e) {
    EXPECT_EQ(e.peer(), 1) << e.what();
  }
}

TEST_F(StoreTest, ServerDropsAConnectionAnnouncingAFrameOverTheLimit) {
  net::Fd fd = net::connect_tcp("127.0.0.1", server_->port(), Deadline::after(2s));
  uint32_t len = static_cast<uint32_t>(store_protocol::kMaxFrameBytes + 1);
  net::send_all(fd.get(), &len, sizeof len, Deadline::after(2s));
  char c = 0;
  try {
    net::recv_all(fd.get(), &c, 1, Deadline::after(2s));
    FAIL() << "the server answered an oversized frame";
  } catch (const net::SocketError& e) {
    EXPECT_EQ(e.reason(), net::SocketError::Reason::Closed) << e.what();
  }
  auto a = client(0);  // the store itself carries on
  a->set("k", "v");
  EXPECT_EQ(a->get("k", 1s), "v");
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
