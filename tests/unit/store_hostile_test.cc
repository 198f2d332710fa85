// The rendezvous store against peers that do not play by its rules: frames over the limits,
// truncated and garbage frames, floods of connections, counters pushed past 64 bits, ranks
// writing each other's keys, a token sniffed on the wire, and squatters on the port.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/store.h"
#include "bootstrap/store_auth.h"
#include "bootstrap/store_keys.h"
#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "common/socket.h"
#include "ringlink/error.h"

using namespace ringlink;
using namespace ringlink::store_protocol;
using namespace std::chrono_literals;
using store_keys::counter;
using store_keys::owned;

namespace {

constexpr int kWorld = 3;
const std::string kToken = "a-secret-job-token-3f9c0e7a51d24b68";

// A raw TCP connection to the store, for bytes no client would send.
struct Raw {
  net::Fd fd;
  explicit Raw(int port) : fd(net::connect_tcp("127.0.0.1", port, Deadline::after(2s))) {}
  void send_bytes(std::string_view b) { net::send_all(fd.get(), b.data(), b.size(), Deadline::after(2s)); }
  void send(std::string_view payload) { send_bytes(wire::frame(payload)); }
  std::string recv(milliseconds t = 2000ms) { return wire::recv_frame(fd.get(), Deadline::after(t), kMaxFrameBytes); }
  // Whether the server closes the connection within `t` (frames before the close are skipped).
  bool closed_by_server(milliseconds t = 3000ms) {
    Deadline d = Deadline::after(t);
    char buf[4096];
    while (!d.expired()) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(d.remaining().count())) <= 0) continue;
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }
  // The handshake as a rank that knows `token` would run it; returns the final reply.
  std::string handshake(const std::string& token, int rank, Channel channel = Channel::Request, uint32_t epoch = 0) {
    Hello h;
    h.rank = rank;
    h.world_size = kWorld;
    h.epoch = epoch;
    h.channel = channel;
    h.heartbeat_ms = 100;
    h.nonce = store_auth::random_bytes(kNonceBytes);
    std::string hello = encode(h);
    send(hello);
    std::string challenge = recv();
    wire::Reader r(challenge);
    EXPECT_EQ(static_cast<Status>(r.u8()), Status::Ok);
    std::string nonce = r.fixed(kNonceBytes);
    r.fixed(kProofBytes);
    send(wire::Writer().u8(static_cast<uint8_t>(Op::Proof)).fixed(store_auth::client_proof(token, hello, nonce)).take());
    return recv();
  }
};

Status status_of(const std::string& reply) { return static_cast<Status>(static_cast<uint8_t>(reply.at(0))); }

std::string failure_message(const std::string& reply) {
  wire::Reader r(reply);
  r.u8();
  return read_failure(r).message;
}

class StoreHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<StoreServer>("127.0.0.1", 0, kToken, kWorld);
    server_->set_drain_timeout(100ms);
  }
  StoreIdentity id(int rank, std::string token = kToken, int port = 0) {
    return StoreIdentity{"127.0.0.1", port ? port : server_->port(), std::move(token), rank, kWorld, 0};
  }
  std::unique_ptr<StoreClient> client(int rank) { return std::make_unique<StoreClient>(id(rank), Deadline::after(2s)); }
  // The store still serves a well-behaved rank.
  void expect_store_serves() {
    auto a = client(0);
    a->set(owned(0, "alive"), "yes");
    EXPECT_EQ(a->get(owned(0, "alive"), 1s), "yes");
  }
  std::unique_ptr<StoreServer> server_;
};

TEST_F(StoreHostile, FrameOverTheHandshakeLimitIsRefusedFromItsHeader) {
  for (uint32_t len : {static_cast<uint32_t>(kMaxHandshakeFrameBytes + 1), uint32_t{64u << 20}}) {
    Raw raw(server_->port());
    raw.send_bytes(std::string_view(reinterpret_cast<const char*>(&len), sizeof len));
    EXPECT_TRUE(raw.closed_by_server()) << "a " << len << "-byte frame before HELLO was waited for";
  }
  expect_store_serves();
}

TEST_F(StoreHostile, TruncatedHelloIsRefusedAsMalformed) {
  Hello h;
  h.rank = 1;
  h.world_size = kWorld;
  h.nonce = std::string(kNonceBytes, 'n');
  std::string hello = encode(h);
  for (size_t cut : {size_t{1}, size_t{5}, size_t{13}, hello.size() - 1}) {
    Raw raw(server_->port());
    raw.send(hello.substr(0, cut));
    std::string reply = raw.recv();
    EXPECT_EQ(status_of(reply), Status::Failed);
    EXPECT_NE(failure_message(reply).find("malformed"), std::string::npos) << failure_message(reply);
    EXPECT_TRUE(raw.closed_by_server());
  }
  expect_store_serves();
}

TEST_F(StoreHostile, HalfAHeaderThenSilenceOrCloseLeavesTheStoreServing) {
  {
    Raw raw(server_->port());
    raw.send_bytes("\x10\x00");
  }  // closed mid-header
  Raw lingering(server_->port());
  lingering.send_bytes("\x10");
  expect_store_serves();
}

TEST_F(StoreHostile, GarbageIsDropped) {
  std::mt19937 rng(7);
  std::string junk(4096, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  Raw raw(server_->port());
  raw.send_bytes(junk);
  EXPECT_TRUE(raw.closed_by_server());
  Raw http(server_->port());
  http.send_bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(http.closed_by_server());
  expect_store_serves();
}

TEST_F(StoreHostile, RequestBeforeTheHandshakeIsRefused) {
  Raw raw(server_->port());
  raw.send(wire::Writer().u8(static_cast<uint8_t>(Op::Set)).str(owned(0, "k")).str("v").take());
  std::string reply = raw.recv();
  EXPECT_EQ(status_of(reply), Status::Failed);
  EXPECT_NE(failure_message(reply).find("expected HELLO"), std::string::npos);
  EXPECT_TRUE(raw.closed_by_server());
}

TEST_F(StoreHostile, WrongProofIsRefusedAndTheRankIdStaysFree) {
  Raw raw(server_->port());
  std::string reply = raw.handshake("not-the-token", 1);
  EXPECT_EQ(status_of(reply), Status::Failed);
  EXPECT_NE(failure_message(reply).find("wrong job token"), std::string::npos) << failure_message(reply);
  EXPECT_TRUE(raw.closed_by_server());
  auto b = client(1);  // rank 1 was not taken by the refused connection
  b->set(owned(1, "k"), "v");
}

TEST_F(StoreHostile, OtherProtocolVersionIsRefusedNamingBoth) {
  Hello h;
  h.version = kVersion + 1;
  h.world_size = kWorld;
  h.nonce = std::string(kNonceBytes, 'n');
  Raw raw(server_->port());
  raw.send(encode(h));
  std::string reply = raw.recv();
  EXPECT_EQ(status_of(reply), Status::Failed);
  EXPECT_NE(failure_message(reply).find(fmt::format("version {} (this build speaks {})", kVersion + 1, kVersion)),
            std::string::npos)
      << failure_message(reply);
}

TEST_F(StoreHostile, AFloodOfIdleConnectionsEvictsTheOldestAndARankStillJoins) {
  std::vector<std::unique_ptr<Raw>> flood;
  for (size_t i = 0; i < kMaxPendingHandshakes + 60; ++i) flood.push_back(std::make_unique<Raw>(server_->port()));
  expect_store_serves();
  // The earliest connections made room for the later ones.
  size_t closed = 0;
  for (size_t i = 0; i < 60; ++i) closed += flood[i]->closed_by_server(500ms);
  EXPECT_GE(closed, 50u) << "the store kept more than " << kMaxPendingHandshakes << " handshakes pending";
}

TEST_F(StoreHostile, FrameOverTheLimitAfterTheHandshakeIsDropped) {
  Raw raw(server_->port());
  ASSERT_EQ(status_of(raw.handshake(kToken, 1)), Status::Ok);
  uint32_t len = static_cast<uint32_t>(kMaxFrameBytes + 1);
  raw.send_bytes(std::string_view(reinterpret_cast<const char*>(&len), sizeof len));
  EXPECT_TRUE(raw.closed_by_server());
  expect_store_serves();
}

TEST_F(StoreHostile, TrailingBytesAfterARequestAreMalformed) {
  Raw raw(server_->port());
  ASSERT_EQ(status_of(raw.handshake(kToken, 1)), Status::Ok);
  raw.send(wire::Writer().u8(static_cast<uint8_t>(Op::Check)).str("k").u8(0).take());
  std::string reply = raw.recv();
  EXPECT_EQ(status_of(reply), Status::Failed);
  EXPECT_NE(failure_message(reply).find("unexpected bytes"), std::string::npos) << failure_message(reply);
}

TEST_F(StoreHostile, AddOverflowIsRefusedAndLeavesTheValue) {
  auto a = client(0), b = client(1);
  const int64_t max = std::numeric_limits<int64_t>::max(), min = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(a->add(counter("c"), max), max);
  try {
    b->add(counter("c"), 1);
    FAIL() << "INT64_MAX + 1 was accepted";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("overflows"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a->add(counter("c"), 0), max);
  EXPECT_EQ(a->add(counter("d"), min), min);
  EXPECT_THROW(a->add(counter("d"), -1), InvalidArgumentError);
  EXPECT_EQ(a->add(counter("d"), 0), min);
  // A key that holds something other than an integer is no counter.
  a->set(owned(0, "text"), "12abc");
  EXPECT_THROW(a->add(owned(0, "text"), 1), InvalidArgumentError);
}

TEST_F(StoreHostile, ARankCannotWriteAnotherRanksKeys) {
  auto a = client(0), b = client(1);
  a->set(owned(0, "ep/1"), "rank 0's address");
  try {
    b->set(owned(0, "ep/1"), "forged address");
    FAIL() << "rank 1 overwrote rank 0's endpoint address";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to rank 0: rank 1 may not write it"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b->get(owned(0, "ep/1"), 1s), "rank 0's address");
  EXPECT_THROW(b->add(owned(0, "n"), 1), InvalidArgumentError);
  // Spellings that might alias rank 0's keys, keys outside the namespace, and setting a counter.
  for (const char* key : {"rank/00/ep/1", "rank/+0/ep/1", "rank/0", "rank//x", "ep/0/1", "", "count/n"})
    EXPECT_THROW(b->set(key, "x"), InvalidArgumentError) << key;
  EXPECT_THROW(b->set(owned(1, std::string(kMaxKeyBytes, 'k')), "x"), InvalidArgumentError);
  EXPECT_FALSE(a->check("rank/00/ep/1"));
}

// ---- the token on the wire ----------------------------------------------------------------

// A TCP relay between clients and the store that keeps a copy of every byte in both directions.
class Relay {
 public:
  explicit Relay(int target) : target_(target), listen_(net::listen_tcp("127.0.0.1", 0)) {
    port_ = net::local_port(listen_.get());
    thread_ = std::thread([this] { run(); });
  }
  ~Relay() {
    stop_ = true;
    thread_.join();
  }
  int port() const { return port_; }
  std::string captured() {
    std::lock_guard lk(mu_);
    return captured_;
  }

 private:
  void run() {
    std::vector<std::pair<net::Fd, net::Fd>> pairs;
    while (!stop_) {
      std::vector<pollfd> fds{{listen_.get(), POLLIN, 0}};
      for (auto& [a, b] : pairs) {
        fds.push_back({a.get(), POLLIN, 0});
        fds.push_back({b.get(), POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        net::Fd in(::accept(listen_.get(), nullptr, nullptr));
        net::Fd out = net::connect_tcp("127.0.0.1", target_, Deadline::after(2s));
        pairs.emplace_back(std::move(in), std::move(out));
        continue;
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        auto& [a, b] = pairs[(i - 1) / 2];
        int from = (i % 2) ? a.get() : b.get(), to = (i % 2) ? b.get() : a.get();
        if (from < 0 || to < 0) continue;
        char buf[65536];
        ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
          a.reset();
          b.reset();
          continue;
        }
        {
          std::lock_guard lk(mu_);
          captured_.append(buf, static_cast<size_t>(n));
        }
        net::send_all(to, buf, static_cast<size_t>(n), Deadline::after(2s));
      }
      std::erase_if(pairs, [](auto& p) { return !p.first.valid(); });
    }
  }
  int target_;
  net::Fd listen_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string captured_;
};

TEST_F(StoreHostile, TheTokenNeverCrossesTheWire) {
  Relay relay(server_->port());
  {
    std::vector<std::unique_ptr<StoreClient>> clients;
    std::vector<std::unique_ptr<WatchChannel>> watches;
    for (int r = 0; r < kWorld; ++r) {
      clients.push_back(std::make_unique<StoreClient>(id(r, kToken, relay.port()), Deadline::after(2s)));
      watches.push_back(std::make_unique<WatchChannel>(id(r, kToken, relay.port()), Deadline::after(2s)));
    }
    clients[0]->wait_for_all_ranks(2s);
    clients[0]->set(owned(0, "sniffed-key"), "sniffed-value");
    EXPECT_EQ(clients[2]->get(owned(0, "sniffed-key"), 1s), "sniffed-value");
    // A rank with the wrong token runs its half of the handshake through the relay too.
    EXPECT_THROW(StoreClient(id(1, "wrong-token", relay.port()), Deadline::after(2s)), InvalidArgumentError);
    for (auto& w : watches) w->bye();
  }
  std::string wire_bytes = relay.captured();
  // The capture saw the traffic (so the check below can fail) ...
  ASSERT_NE(wire_bytes.find("sniffed-value"), std::string::npos) << "the relay captured " << wire_bytes.size() << " bytes";
  // ... and neither the token nor any long piece of it is there.
  for (size_t start = 0; start + 8 <= kToken.size(); ++start)
    EXPECT_EQ(wire_bytes.find(kToken.substr(start, 8)), std::string::npos) << "token bytes at " << start << " leaked";
}

// ---- squatters on the port ------------------------------------------------------------------

// A listener that is not rank 0's store: it answers each connection with `reply(hello)` and
// keeps what the client sent after that.
class Squatter {
 public:
  explicit Squatter(std::function<std::string(const std::string&)> reply)
      : listen_(net::listen_tcp("127.0.0.1", 0)), reply_(std::move(reply)) {
    port_ = net::local_port(listen_.get());
    thread_ = std::thread([this] {
      pollfd p{listen_.get(), POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return;
      net::Fd c(::accept(listen_.get(), nullptr, nullptr));
      try {
        std::string hello = wire::recv_frame(c.get(), Deadline::after(2s), kMaxFrameBytes);
        std::string answer = reply_(hello);
        if (answer.empty()) {  // says nothing: wait for the client to give up
          char b;
          ::recv(c.get(), &b, 1, 0);
          return;
        }
        net::send_all(c.get(), answer.data(), answer.size(), Deadline::after(2s));
        char buf[4096];
        for (;;) {
          pollfd q{c.get(), POLLIN, 0};
          if (::poll(&q, 1, 3000) <= 0) break;
          ssize_t n = ::recv(c.get(), buf, sizeof buf, 0);
          if (n <= 0) break;
          std::lock_guard lk(mu_);
          after_reply_.append(buf, static_cast<size_t>(n));
        }
      } catch (const std::exception&) {
      }
    });
  }
  ~Squatter() { thread_.join(); }
  int port() const { return port_; }
  std::string after_reply() {
    std::lock_guard lk(mu_);
    return after_reply_;
  }

 private:
  net::Fd listen_;
  int port_ = 0;
  std::function<std::string(const std::string&)> reply_;
  std::thread thread_;
  std::mutex mu_;
  std::string after_reply_;
};

TEST_F(StoreHostile, AnotherJobsStoreOnThePortIsDetected) {
  StoreServer other("127.0.0.1", 0, "another-jobs-token", kWorld);
  try {
    StoreClient c(id(1, kToken, other.port()), Deadline::after(2s));
    FAIL() << "a rank joined a store that does not know its token";
  } catch (const InvalidArgumentError& e) {
    EXPECT_EQ(e.peer(), 0);
    EXPECT_NE(std::string(e.what()).find("could not prove that it knows this job's token"), std::string::npos)
        << e.what();
  }
}

TEST_F(StoreHostile, ASquatterThatFakesTheChallengeLearnsNothing) {
  Squatter squatter([](const std::string&) {
    return wire::frame(reply(Status::Ok).fixed(store_auth::random_bytes(kNonceBytes)).fixed(std::string(kProofBytes, 'p')).take());
  });
  try {
    StoreClient c(id(1, kToken, squatter.port()), Deadline::after(2s));
    FAIL() << "a rank joined a squatter";
  } catch (const InvalidArgumentError& e) {
    EXPECT_EQ(e.peer(), 0);
    EXPECT_NE(std::string(e.what()).find("squatting on the port"), std::string::npos) << e.what();
  }
  // All the squatter got after its fake challenge is the one-byte ABORT: no proof to attack.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(squatter.after_reply(), wire::frame(std::string(1, static_cast<char>(Op::Abort))));
}

TEST_F(StoreHostile, ASquatterThatSpeaksAnotherProtocolIsReported) {
  Squatter squatter([](const std::string&) { return std::string("HTTP/1.1 400 Bad Request\r\n\r\n"); });
  try {
    StoreClient c(id(1, kToken, squatter.port()), Deadline::after(2s));
    FAIL() << "a rank joined a web server";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.peer(), 0);
    EXPECT_NE(std::string(e.what()).find("not rank 0's rendezvous store"), std::string::npos) << e.what();
  }
}

TEST_F(StoreHostile, ASilentSquatterFailsTheHandshakeInBoundedTime) {
  Squatter squatter([](const std::string&) { return std::string(); });
  auto t0 = std::chrono::steady_clock::now();
  try {
    StoreClient c(id(1, kToken, squatter.port()), Deadline::after(500ms));
    FAIL() << "a rank joined a listener that never answered";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("is the process listening there rank 0 of this job?"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
}

}  // namespace
