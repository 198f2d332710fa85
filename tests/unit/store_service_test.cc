// The store's logic (StoreService) without sockets and on a clock the test moves: the
// handshake, heartbeats and liveness, eviction, and a reply to a connection that fails while
// its request is handled.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "bootstrap/store_auth.h"
#include "bootstrap/store_keys.h"
#include "bootstrap/store_protocol.h"
#include "bootstrap/store_service.h"
#include "bootstrap/wire.h"

using namespace ringlink;
using namespace ringlink::store_protocol;
using namespace std::chrono_literals;

namespace {

constexpr int kWorld = 3;
const std::string kToken = "service-token";

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() : svc_(StoreService::Config{kToken, kWorld, 1000ms, [](size_t n) { return std::string(n, 's'); }}) {}

  // Runs the handshake for `rank` on a new connection; returns its id.
  int join(int rank, Channel channel, uint32_t heartbeat_ms = 100) {
    int id = next_++;
    svc_.on_open(id, "10.0.0." + std::to_string(rank + 1) + ":5000", now_);
    Hello h;
    h.rank = rank;
    h.world_size = kWorld;
    h.channel = channel;
    h.heartbeat_ms = heartbeat_ms;
    h.nonce = std::string(kNonceBytes, static_cast<char>('a' + id));
    std::string hello = encode(h);
    svc_.on_frame(id, hello, now_);
    auto out = svc_.take_output();
    EXPECT_EQ(out.size(), 1u);
    wire::Reader r(out.at(0).payload);
    EXPECT_EQ(static_cast<Status>(r.u8()), Status::Ok);
    std::string nonce = r.fixed(kNonceBytes);
    EXPECT_TRUE(store_auth::proofs_equal(r.fixed(kProofBytes), store_auth::server_proof(kToken, hello, nonce)));
    svc_.on_frame(id, wire::Writer().u8(static_cast<uint8_t>(Op::Proof)).fixed(store_auth::client_proof(kToken, hello, nonce)).take(),
                  now_);
    out = svc_.take_output();
    EXPECT_FALSE(out.empty());
    EXPECT_EQ(static_cast<Status>(out.at(0).payload.at(0)), Status::Ok) << "rank " << rank << " was not admitted";
    return id;
  }
  void ping(int id) { svc_.on_frame(id, std::string(1, static_cast<char>(Op::Ping)), now_); }
  void advance(milliseconds d) {
    now_ += d;
    svc_.on_tick(now_);
  }
  // Events pushed to `id` since the last call, heartbeats left out.
  std::vector<Pushed> events(const std::vector<StoreService::Output>& out, int id) {
    std::vector<Pushed> got;
    for (auto& o : out) {
      if (o.conn != id || o.payload.empty()) continue;
      wire::Reader r(o.payload);
      Pushed p = read_pushed(r);
      if (p.event != Event::Heartbeat) got.push_back(p);
    }
    return got;
  }
  static bool closes(const std::vector<StoreService::Output>& out, int id) {
    for (auto& o : out)
      if (o.conn == id && o.close) return true;
    return false;
  }

  StoreService svc_;
  Clock::time_point now_ = Clock::now();
  int next_ = 1;
};

TEST_F(ServiceTest, AdmitsOnlyAProofOfTheTokenAndNeverSendsIt) {
  int id = next_++;
  svc_.on_open(id, "10.0.0.9:1", now_);
  Hello h;
  h.rank = 1;
  h.world_size = kWorld;
  h.nonce = std::string(kNonceBytes, 'x');
  std::string hello = encode(h);
  svc_.on_frame(id, hello, now_);
  auto out = svc_.take_output();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].payload.find(kToken), std::string::npos);
  wire::Reader r(out[0].payload);
  r.u8();
  std::string nonce = r.fixed(kNonceBytes);
  // A proof computed with another token is refused, and the connection closed.
  svc_.on_frame(id, wire::Writer().u8(static_cast<uint8_t>(Op::Proof)).fixed(store_auth::client_proof("guess", hello, nonce)).take(),
                now_);
  out = svc_.take_output();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(static_cast<Status>(out[0].payload.at(0)), Status::Failed);
  EXPECT_TRUE(closes(out, id));
  EXPECT_EQ(svc_.connections(), 0u);
}

TEST_F(ServiceTest, HeartbeatsGoToEveryWatchChannelEachPeriod) {
  int w0 = join(0, Channel::Watch);
  join(0, Channel::Request);
  int heartbeats = 0;
  for (int i = 0; i < 10; ++i) {
    ping(w0);
    advance(100ms);  // the period for a 1000 ms liveness timeout
    for (auto& o : svc_.take_output()) heartbeats += o.conn == w0;
  }
  EXPECT_GE(heartbeats, 9);
  EXPECT_LE(heartbeats, 11);
}

TEST_F(ServiceTest, SilentRanksAreDeclaredUnreachableTogetherNamingEach) {
  int w0 = join(0, Channel::Watch), r1 = join(1, Channel::Request), w1 = join(1, Channel::Watch),
      w2 = join(2, Channel::Watch);
  join(0, Channel::Request);
  join(2, Channel::Request);
  svc_.take_output();
  // Rank 0 keeps pinging; ranks 1 and 2 go quiet 50 ms apart (cut off together).
  std::vector<StoreService::Output> out;
  for (int t = 0; t < 12; ++t) {
    ping(w0);
    if (t <= 2) ping(w2);
    advance(100ms);
    auto o = svc_.take_output();
    out.insert(out.end(), o.begin(), o.end());
    if (!events(o, w0).empty()) break;
  }
  auto ev = events(out, w0);
  ASSERT_EQ(ev.size(), 1u) << "rank 0 heard nothing of the silent ranks";
  EXPECT_EQ(ev[0].event, Event::Lost);
  EXPECT_EQ(ev[0].rank, 1);
  EXPECT_NE(ev[0].message.find("rank(s) 1, 2 unreachable"), std::string::npos) << ev[0].message;
  EXPECT_NE(ev[0].message.find("rank 2 on 10.0.0.3"), std::string::npos) << ev[0].message;
  EXPECT_TRUE(closes(out, w1));
  EXPECT_TRUE(closes(out, w2));
  EXPECT_TRUE(closes(out, r1));
  EXPECT_FALSE(closes(out, w0));
}

TEST_F(ServiceTest, ALateRankThatPingsIsNeverUnreachable) {
  int w0 = join(0, Channel::Watch), w1 = join(1, Channel::Watch);
  join(0, Channel::Request);
  join(1, Channel::Request);
  for (int t = 0; t < 600; ++t) {  // a minute, in heartbeat periods
    ping(w0);
    ping(w1);
    advance(100ms);
    auto out = svc_.take_output();
    ASSERT_TRUE(events(out, w0).empty()) << "after " << t * 100 << " ms: " << events(out, w0)[0].message;
  }
}

TEST_F(ServiceTest, AWatchChannelThatAnnouncesSlowHeartbeatsGetsFourOfThem) {
  int w0 = join(0, Channel::Watch), w1 = join(1, Channel::Watch, 500);
  for (int t = 0; t < 19; ++t) {
    ping(w0);
    if (t % 5 == 0) ping(w1);  // every 500 ms, as announced
    advance(100ms);
  }
  EXPECT_TRUE(events(svc_.take_output(), w0).empty()) << "a rank pinging as it announced was declared unreachable";
}

TEST_F(ServiceTest, AWaiterGetsItsValueWhenTheWritersConnectionFailsMidRequest) {
  int r0 = join(0, Channel::Request), r1 = join(1, Channel::Request);
  std::string key = store_keys::owned(0, "k");
  svc_.on_frame(r1, wire::Writer().u8(static_cast<uint8_t>(Op::Get)).str(key).u32(5000).take(), now_);
  svc_.on_frame(r0, wire::Writer().u8(static_cast<uint8_t>(Op::Set)).str(key).str("v").take(), now_);
  // The reply to rank 0 cannot be sent: its connection is gone before the output is taken.
  svc_.on_closed(r0, now_);
  auto out = svc_.take_output();
  bool answered = false;
  for (auto& o : out)
    if (o.conn == r1 && !o.payload.empty()) {
      wire::Reader r(o.payload);
      EXPECT_EQ(static_cast<Status>(r.u8()), Status::Ok);
      EXPECT_EQ(r.str(), "v");
      answered = true;
    }
  EXPECT_TRUE(answered);
  // Frames for the closed connection change nothing.
  svc_.on_frame(r0, wire::Writer().u8(static_cast<uint8_t>(Op::Set)).str(key).str("w").take(), now_);
  EXPECT_TRUE(svc_.take_output().empty());
}

TEST_F(ServiceTest, WatchChannelClosedWithoutByeFailsTheEpochOnce) {
  int w0 = join(0, Channel::Watch), w1 = join(1, Channel::Watch), w2 = join(2, Channel::Watch);
  svc_.take_output();
  svc_.on_closed(w1, now_);
  auto out = svc_.take_output();
  ASSERT_EQ(events(out, w0).size(), 1u);
  EXPECT_EQ(events(out, w0)[0].rank, 1);
  EXPECT_EQ(events(out, w2).size(), 1u);
  // Rank 2 going next is a consequence: no second event.
  svc_.on_closed(w2, now_);
  EXPECT_TRUE(events(svc_.take_output(), w0).empty());
}

TEST_F(ServiceTest, PendingHandshakesAreCappedByEvictingTheOldest) {
  for (size_t i = 0; i < kMaxPendingHandshakes; ++i) {
    svc_.on_open(1000 + static_cast<int>(i), "10.9.9.9:1", now_);
    now_ += 1ms;
  }
  EXPECT_TRUE(svc_.take_output().empty());
  svc_.on_open(5000, "10.9.9.9:2", now_);
  auto out = svc_.take_output();
  EXPECT_TRUE(closes(out, 1000));
  EXPECT_EQ(svc_.connections(), kMaxPendingHandshakes);
  // And a handshake left unfinished is dropped at its deadline.
  advance(kHandshakeTimeout + 1s);
  EXPECT_EQ(svc_.connections(), 0u);
}

TEST_F(ServiceTest, FrameLimitIsSmallUntilTheHandshakeIsDone) {
  svc_.on_open(77, "10.0.0.1:1", now_);
  EXPECT_EQ(svc_.frame_limit(77), kMaxHandshakeFrameBytes);
  int joined = join(1, Channel::Request);
  EXPECT_EQ(svc_.frame_limit(joined), kMaxFrameBytes);
}

}  // namespace
