#include "bootstrap/store_service.h"

#include <algorithm>
#include <charconv>
#include <utility>
#include <cstddef>

#include <fmt/format.h>

#include "bootstrap/store_auth.h"
#include "bootstrap/store_keys.h"
#include "common/log.h"
#include "ringlink/error.h"

namespace ringlink {

using namespace store_protocol;

namespace {

std::string host_of(const std::string& peer) { return peer.substr(0, peer.rfind(':')); }

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A reported failure's message is for people; keep what a peer may make every rank print short.
constexpr size_t kMaxReportedMessageBytes = 4096;

}  // namespace

struct StoreService::Conn {
  enum class Stage { AwaitHello, AwaitProof, Joined };
  std::string name;  // "ip:port"
  Clock::time_point opened;
  Stage stage = Stage::AwaitHello;
  Hello hello;                // what it claims (valid from AwaitProof on)
  std::string hello_payload;  // as it sent it, for the proofs
  std::string server_nonce;
  // Watch channels, once joined:
  Clock::time_point last_heard;
  milliseconds silence_limit{0};
  Clock::time_point next_heartbeat;
  bool said_bye = false;
};

struct StoreService::Waiter {
  enum class Kind { Get, Join, Barrier };
  int conn;
  Kind kind;
  std::string key;  // Get: the key; Barrier: its name
  Clock::time_point deadline;
};

struct StoreService::Epoch {
  std::map<std::string, std::string> kv;
  size_t stored_bytes = 0;
  std::map<int, std::string> joined;        // rank -> the address its request channel came from
  std::map<int, int> request_of_rank;       // rank -> conn id, while open
  std::map<int, int> watcher_of_rank;       // rank -> conn id, while open
  std::map<std::string, std::set<int>> barriers;  // name -> ranks that arrived
  std::optional<Failure> failure;           // the first; every later request of the epoch gets it
};

StoreService::StoreService(Config config)
    : config_(std::move(config)), heartbeat_period_(heartbeat_period(config_.liveness_timeout)) {
  if (!config_.random) config_.random = store_auth::random_bytes;
}

StoreService::~StoreService() = default;

std::vector<StoreService::Output> StoreService::take_output() { return std::exchange(out_, {}); }

size_t StoreService::frame_limit(int conn) const {
  auto it = conns_.find(conn);
  return it != conns_.end() && it->second.stage == Conn::Stage::Joined ? kMaxFrameBytes : kMaxHandshakeFrameBytes;
}

size_t StoreService::joined_connections() const {
  return static_cast<size_t>(
      std::count_if(conns_.begin(), conns_.end(), [](const auto& c) { return c.second.stage == Conn::Stage::Joined; }));
}

size_t StoreService::connections() const { return conns_.size(); }

bool StoreService::any_failed() const {
  return !failed_epochs_.empty() ||
         std::any_of(epochs_.begin(), epochs_.end(), [](const auto& e) { return e.second.failure.has_value(); });
}

Clock::time_point StoreService::next_deadline() const {
  auto next = Clock::time_point::max();
  for (auto& w : waiters_) next = std::min(next, w.deadline);
  for (auto& [id, c] : conns_) {
    if (c.stage != Conn::Stage::Joined) {
      next = std::min(next, c.opened + kHandshakeTimeout);
    } else if (c.hello.channel == Channel::Watch) {
      next = std::min({next, c.next_heartbeat, c.last_heard + c.silence_limit});
    }
  }
  return next;
}

void StoreService::send(int id, std::string payload) {
  if (conns_.count(id)) out_.push_back({id, std::move(payload), false});
}

void StoreService::refuse(int id, const Failure& failure) {
  send(id, failed_reply(failure));
  close_conn(id, failure.message);
}

// ---- connections ----------------------------------------------------------------------------

void StoreService::on_open(int id, std::string peer, Clock::time_point now) {
  size_t pending = conns_.size() - joined_connections();
  if (pending >= kMaxPendingHandshakes) {
    // Evict the oldest instead of refusing the newcomer: a flood of idle connections cannot
    // keep a rank that completes its handshake in a round trip out.
    auto oldest = conns_.end();
    for (auto it = conns_.begin(); it != conns_.end(); ++it)
      if (it->second.stage != Conn::Stage::Joined && (oldest == conns_.end() || it->second.opened < oldest->second.opened))
        oldest = it;
    if (oldest != conns_.end()) {
      log::warn("store: dropping {}: {} connections are in their handshake at once", oldest->second.name, pending);
      close_conn(oldest->first, "evicted");
    }
  }
  Conn c;
  c.name = std::move(peer);
  c.opened = now;
  conns_.emplace(id, std::move(c));
}

void StoreService::on_closed(int id, Clock::time_point) { close_conn(id, "connection closed"); }

void StoreService::close_conn(int id, std::string_view why) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn c = std::move(it->second);
  conns_.erase(it);
  out_.push_back({id, {}, true});
  std::erase_if(waiters_, [&](const Waiter& w) { return w.conn == id; });
  if (c.stage != Conn::Stage::Joined) return;
  log::info("store: {} (rank {}, {} channel) closed: {}", c.name, c.hello.rank,
            c.hello.channel == Channel::Watch ? "watch" : "request", why);
  auto eit = epochs_.find(c.hello.epoch);
  if (eit == epochs_.end()) return;
  Epoch& ep = eit->second;
  auto& of_rank = c.hello.channel == Channel::Watch ? ep.watcher_of_rank : ep.request_of_rank;
  if (auto r = of_rank.find(c.hello.rank); r != of_rank.end() && r->second == id) of_rank.erase(r);
  if (c.hello.channel == Channel::Watch && !c.said_bye) {
    std::string msg = fmt::format("rank {} exited or was killed (its connection to the store closed)", c.hello.rank);
    if (!ep.failure) log::warn("store: {}", msg);
    fail_epoch(c.hello.epoch, {ErrorKind::PeerLost, c.hello.rank, msg});
  }
  retire_if_unused(c.hello.epoch);
}

void StoreService::retire_if_unused(uint32_t epoch) {
  auto it = epochs_.find(epoch);
  if (it == epochs_.end() || !it->second.request_of_rank.empty() || !it->second.watcher_of_rank.empty()) return;
  // Nobody is left to read its keys. Keep a failure so a rank arriving late hears why.
  if (it->second.failure) {
    failed_epochs_[epoch] = *it->second.failure;
    if (failed_epochs_.size() > 4 * kMaxLiveEpochs) failed_epochs_.erase(failed_epochs_.begin());
  }
  stored_bytes_ -= it->second.stored_bytes;
  epochs_.erase(it);
}

// ---- the handshake --------------------------------------------------------------------------

void StoreService::on_frame(int id, std::string_view payload, Clock::time_point now) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.stage == Conn::Stage::Joined && c.hello.channel == Channel::Watch) c.last_heard = now;
  try {
    wire::Reader r(payload);
    auto op = static_cast<Op>(r.u8());
    switch (c.stage) {
      case Conn::Stage::AwaitHello: return handle_hello(id, c, payload, r, now);
      case Conn::Stage::AwaitProof: return handle_proof(id, c, op, r, now);
      case Conn::Stage::Joined: return handle_request(id, op, r, now);
    }
  } catch (const wire::FormatError& e) {
    std::string name = conns_.count(id) ? conns_.at(id).name : "?";
    log::warn("store: dropping {}: malformed message: {}", name, e.what());
    refuse(id, {ErrorKind::InvalidArgument, -1, fmt::format("malformed message: {}", e.what())});
  }
}

void StoreService::handle_hello(int id, Conn& c, std::string_view payload, wire::Reader& r, Clock::time_point) {
  if (payload.empty() || static_cast<Op>(payload[0]) != Op::Hello) {
    log::warn("store: dropping {}: it did not start with HELLO", c.name);
    return refuse(id, {ErrorKind::InvalidArgument, -1, "expected HELLO"});
  }
  c.hello = read_hello(r);
  c.hello_payload = std::string(payload);
  c.server_nonce = config_.random(kNonceBytes);
  if (c.server_nonce.size() != kNonceBytes) throw wire::FormatError("nonce generator failed");
  std::string proof = store_auth::server_proof(config_.token, c.hello_payload, c.server_nonce);
  c.stage = Conn::Stage::AwaitProof;
  send(id, reply(Status::Ok).fixed(c.server_nonce).fixed(proof).take());
}

void StoreService::handle_proof(int id, Conn& c, Op op, wire::Reader& r, Clock::time_point now) {
  if (op == Op::Abort) {
    r.expect_end();
    log::warn("store: refused connection from {}: it does not have this job's token (rank {} found the store's "
              "proof wrong)",
              c.name, c.hello.rank);
    return close_conn(id, "aborted the handshake");
  }
  if (op != Op::Proof) throw wire::FormatError(fmt::format("expected PROOF, got request {}", static_cast<int>(op)));
  std::string proof = r.fixed(kProofBytes);
  r.expect_end();
  if (!store_auth::proofs_equal(proof, store_auth::client_proof(config_.token, c.hello_payload, c.server_nonce))) {
    log::warn("store: refused connection from {}: wrong job token (rank {} claims to belong to this job)", c.name,
              c.hello.rank);
    return refuse(id, {ErrorKind::InvalidArgument, -1,
                       "refused: wrong job token (RINGLINK_JOB_TOKEN differs from rank 0's)"});
  }
  admit(id, now);
}

// A connection that proved it knows the token: the job's own checks.
void StoreService::admit(int id, Clock::time_point now) {
  Conn& c = conns_.at(id);
  const Hello h = c.hello;
  if (auto f = failed_epochs_.find(h.epoch); f != failed_epochs_.end()) return refuse(id, f->second);
  std::string problem;
  if (h.world_size != config_.world_size) {
    problem = fmt::format("ranks disagree on WORLD_SIZE: rank {} has {}, rank 0 has {}", h.rank, h.world_size,
                          config_.world_size);
  } else if (h.rank < 0 || h.rank >= config_.world_size) {
    problem = fmt::format("rank id {} is out of range for WORLD_SIZE={} (from {})", h.rank, config_.world_size, c.name);
  } else if (!epochs_.count(h.epoch) && epochs_.size() >= kMaxLiveEpochs) {
    return refuse(id, {ErrorKind::InvalidArgument, -1,
                       fmt::format("the store serves {} communicators at once already", kMaxLiveEpochs)});
  }
  Epoch& ep = epochs_[h.epoch];
  if (problem.empty()) {
    if (h.channel == Channel::Request && ep.joined.count(h.rank)) {
      problem = fmt::format("rank id {} is used twice: joined from {} and again from {}", h.rank, ep.joined[h.rank],
                            c.name);
    } else if (h.channel == Channel::Watch && ep.watcher_of_rank.count(h.rank)) {
      problem = fmt::format("rank id {} is used twice (second watch channel from {})", h.rank, c.name);
    }
  }
  if (!problem.empty()) {
    log::warn("store: {}", problem);
    Failure failure{ErrorKind::Mismatch, h.rank, problem};
    refuse(id, failure);
    fail_epoch(h.epoch, failure);
    retire_if_unused(h.epoch);
    return;
  }
  c.stage = Conn::Stage::Joined;
  if (h.channel == Channel::Request) {
    ep.joined[h.rank] = c.name;
    ep.request_of_rank[h.rank] = id;
  } else {
    ep.watcher_of_rank[h.rank] = id;
    c.last_heard = now;
    c.silence_limit = store_protocol::silence_limit(config_.liveness_timeout, milliseconds(h.heartbeat_ms));
    c.next_heartbeat = now + heartbeat_period_;
  }
  auto period = static_cast<uint32_t>(heartbeat_period_.count());
  send(id, ep.failure ? failed_reply(*ep.failure) : reply(Status::Ok).u32(period).take());
  if (h.channel == Channel::Request) satisfy_join_waiters(h.epoch);
}

// ---- requests -------------------------------------------------------------------------------

void StoreService::handle_request(int id, Op op, wire::Reader& r, Clock::time_point now) {
  Conn& c = conns_.at(id);
  const uint32_t epoch = c.hello.epoch;
  Epoch& ep = epochs_.at(epoch);
  switch (op) {
    case Op::Bye: r.expect_end(); c.said_bye = true; return;
    case Op::Ping: r.expect_end(); return;
    case Op::ReportFailure: {
      Failure f;
      f.kind = read_error_kind(r);
      f.culprit = r.i32();
      f.message = r.str().substr(0, kMaxReportedMessageBytes);
      r.expect_end();
      if (f.culprit < -1 || f.culprit >= config_.world_size) f.culprit = -1;
      if (!ep.failure) log::warn("store: job failed, as rank {} reports: {}", c.hello.rank, f.message);
      send(id, reply(Status::Ok).take());
      fail_epoch(epoch, f);
      return;
    }
    default: break;
  }
  if (ep.failure) return send(id, failed_reply(*ep.failure));
  switch (op) {
    case Op::Set: return handle_set(id, r);
    case Op::Add: return handle_add(id, r);
    case Op::Barrier: return handle_barrier(id, r, now);
    case Op::Get: {
      std::string key = r.str();
      milliseconds timeout(r.u32());
      r.expect_end();
      if (auto it = ep.kv.find(key); it != ep.kv.end()) return send(id, reply(Status::Ok).str(it->second).take());
      waiters_.push_back({id, Waiter::Kind::Get, std::move(key), now + timeout});
      return;
    }
    case Op::Check: {
      std::string key = r.str();
      r.expect_end();
      return send(id, reply(ep.kv.count(key) ? Status::Ok : Status::Absent).take());
    }
    case Op::JoinWait: {
      milliseconds timeout(r.u32());
      r.expect_end();
      if (static_cast<int>(ep.joined.size()) == config_.world_size) return send(id, roster_reply(ep));
      waiters_.push_back({id, Waiter::Kind::Join, {}, now + timeout});
      return;
    }
    default:
      return send(id, failed_reply({ErrorKind::InvalidArgument, -1,
                                    fmt::format("unknown request {}", static_cast<int>(op))}));
  }
}

std::optional<std::string> StoreService::write_refusal(const Conn& c, const std::string& key, bool add) const {
  if (key.size() > kMaxKeyBytes) return fmt::format("a key of {} bytes is over the limit of {}", key.size(), kMaxKeyBytes);
  return store_keys::write_refusal(key, c.hello.rank, add);
}

bool StoreService::store_value(Epoch& ep, const std::string& key, std::string value) {
  auto it = ep.kv.find(key);
  size_t old_bytes = it == ep.kv.end() ? 0 : it->first.size() + it->second.size();
  size_t new_bytes = key.size() + value.size();
  if (stored_bytes_ - old_bytes + new_bytes > kMaxStoredBytes) return false;
  stored_bytes_ = stored_bytes_ - old_bytes + new_bytes;
  ep.stored_bytes = ep.stored_bytes - old_bytes + new_bytes;
  ep.kv[key] = std::move(value);
  return true;
}

void StoreService::handle_set(int id, wire::Reader& r) {
  const Conn& c = conns_.at(id);
  const uint32_t epoch = c.hello.epoch;
  Epoch& ep = epochs_.at(epoch);
  std::string key = r.str();
  std::string value = r.str();
  r.expect_end();
  if (auto refusal = write_refusal(c, key, false)) {
    log::warn("store: refused a write from rank {} ({}): {}", c.hello.rank, c.name, *refusal);
    return send(id, failed_reply({ErrorKind::InvalidArgument, -1, *refusal}));
  }
  if (!store_value(ep, key, value))
    return send(id, failed_reply({ErrorKind::InvalidArgument, -1,
                                  fmt::format("the store is full ({} bytes stored)", stored_bytes_)}));
  send(id, reply(Status::Ok).take());
  satisfy_get_waiters(epoch, key, value);
}

void StoreService::handle_add(int id, wire::Reader& r) {
  const Conn& c = conns_.at(id);
  const uint32_t epoch = c.hello.epoch;
  Epoch& ep = epochs_.at(epoch);
  std::string key = r.str();
  int64_t delta = r.i64();
  r.expect_end();
  auto fail = [&](std::string msg) { send(id, failed_reply({ErrorKind::InvalidArgument, -1, std::move(msg)})); };
  if (auto refusal = write_refusal(c, key, true)) return fail(*refusal);
  int64_t value = 0;
  if (auto it = ep.kv.find(key); it != ep.kv.end()) {
    const std::string& s = it->second;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || p != s.data() + s.size())
      return fail(fmt::format("key '{}' does not hold an integer", store_keys::shown(key)));
  }
  int64_t sum = 0;
  if (__builtin_add_overflow(value, delta, &sum))
    return fail(fmt::format("adding {} to key '{}' (holding {}) overflows a 64-bit integer", delta,
                            store_keys::shown(key), value));
  std::string text = std::to_string(sum);
  if (!store_value(ep, key, text)) return fail(fmt::format("the store is full ({} bytes stored)", stored_bytes_));
  send(id, reply(Status::Ok).i64(sum).take());
  satisfy_get_waiters(epoch, key, text);
}

void StoreService::handle_barrier(int id, wire::Reader& r, Clock::time_point now) {
  const Conn& c = conns_.at(id);
  const uint32_t epoch = c.hello.epoch;
  std::string name = r.str();
  milliseconds timeout(r.u32());
  r.expect_end();
  if (name.size() > kMaxKeyBytes)
    return send(id, failed_reply({ErrorKind::InvalidArgument, -1, "barrier name over the key limit"}));
  Epoch& ep = epochs_.at(epoch);
  ep.barriers[name].insert(c.hello.rank);
  waiters_.push_back({id, Waiter::Kind::Barrier, name, now + timeout});
  satisfy_barrier(epoch, name);
}

std::string StoreService::roster_reply(const Epoch& ep) const {
  wire::Writer w = reply(Status::Ok);
  w.u32(static_cast<uint32_t>(ep.joined.size()));
  for (auto& [rank, name] : ep.joined) w.str(host_of(name));
  return w.take();
}

// ---- waits ----------------------------------------------------------------------------------

void StoreService::answer_waiters(uint32_t epoch, const std::function<bool(const Waiter&)>& match,
                                  const std::string& payload) {
  std::erase_if(waiters_, [&](const Waiter& w) {
    auto c = conns_.find(w.conn);
    bool hit = c != conns_.end() && c->second.hello.epoch == epoch && match(w);
    if (hit) send(w.conn, payload);
    return hit;
  });
}

void StoreService::satisfy_join_waiters(uint32_t epoch) {
  Epoch& ep = epochs_.at(epoch);
  if (static_cast<int>(ep.joined.size()) != config_.world_size) return;
  answer_waiters(epoch, [](const Waiter& w) { return w.kind == Waiter::Kind::Join; }, roster_reply(ep));
}

void StoreService::satisfy_get_waiters(uint32_t epoch, const std::string& key, const std::string& value) {
  answer_waiters(
      epoch, [&](const Waiter& w) { return w.kind == Waiter::Kind::Get && w.key == key; },
      reply(Status::Ok).str(value).take());
}

void StoreService::satisfy_barrier(uint32_t epoch, const std::string& name) {
  if (static_cast<int>(epochs_.at(epoch).barriers[name].size()) != config_.world_size) return;
  answer_waiters(
      epoch, [&](const Waiter& w) { return w.kind == Waiter::Kind::Barrier && w.key == name; },
      reply(Status::Ok).take());
}

std::vector<int> StoreService::missing_ranks(const std::set<int>& present) const {
  std::vector<int> missing;
  for (int r = 0; r < config_.world_size; ++r)
    if (!present.count(r)) missing.push_back(r);
  return missing;
}

void StoreService::fail_epoch(uint32_t epoch, const Failure& failure) {
  Epoch& ep = epochs_[epoch];
  bool first = !ep.failure;
  if (first) ep.failure = failure;
  answer_waiters(epoch, [](const Waiter&) { return true; }, failed_reply(*ep.failure));
  if (!first) return;  // every rank heard of the first failure; later ones are its consequences
  const Failure& f = *ep.failure;
  std::string event = encode(Pushed{f.kind == ErrorKind::PeerLost ? Event::Lost : Event::Failed, f.kind, f.culprit,
                                    f.message});
  for (auto& [rank, id] : ep.watcher_of_rank) send(id, event);
}

void StoreService::expire_waiters(Clock::time_point now) {
  std::vector<Waiter> expired;
  std::erase_if(waiters_, [&](const Waiter& w) {
    bool hit = w.deadline <= now;
    if (hit) expired.push_back(w);
    return hit;
  });
  for (auto& w : expired) {
    auto c = conns_.find(w.conn);
    if (c == conns_.end()) continue;
    const Epoch& ep = epochs_.at(c->second.hello.epoch);
    Failure timeout{ErrorKind::Timeout, -1, {}};
    if (w.kind == Waiter::Kind::Get) {
      timeout.message = fmt::format("key '{}' was never set", store_keys::shown(w.key));
    } else {
      std::set<int> present;
      if (w.kind == Waiter::Kind::Join) {
        for (auto& [rank, name] : ep.joined) present.insert(rank);
      } else if (auto b = ep.barriers.find(w.key); b != ep.barriers.end()) {
        present = b->second;
      }
      std::vector<int> missing = missing_ranks(present);
      if (!missing.empty()) timeout.culprit = missing.front();
      timeout.message = w.kind == Waiter::Kind::Join
                            ? fmt::format("rank(s) {} never joined", list_ranks(missing))
                            : fmt::format("rank(s) {} never reached barrier '{}' ({} of {} did)", list_ranks(missing),
                                          store_keys::shown(w.key), present.size(), config_.world_size);
    }
    send(w.conn, failed_reply(timeout));
  }
}

void StoreService::check_liveness(Clock::time_point now) {
  // Watch channels silent past their limit, by epoch. Ranks cut off together (a host down, a
  // link cut) fall silent within a heartbeat of each other: each epoch's report names every
  // rank silent for more than two heartbeat periods once one of them is past its limit.
  std::map<uint32_t, std::vector<int>> expired;
  for (auto& [id, c] : conns_)
    if (c.stage == Conn::Stage::Joined && c.hello.channel == Channel::Watch && now - c.last_heard > c.silence_limit)
      expired[c.hello.epoch].push_back(id);
  for (auto& [epoch, ids] : expired) {
    std::vector<std::pair<int, int>> silent;  // rank, conn
    for (auto& [id, c] : conns_) {
      if (c.stage != Conn::Stage::Joined || c.hello.channel != Channel::Watch || c.hello.epoch != epoch) continue;
      auto period = std::max(milliseconds(c.hello.heartbeat_ms), heartbeat_period_);
      if (now - c.last_heard > 2 * period) silent.push_back({c.hello.rank, id});
    }
    std::sort(silent.begin(), silent.end());
    std::vector<int> ranks;
    std::string detail;
    for (auto& [rank, id] : silent) {
      const Conn& c = conns_.at(id);
      ranks.push_back(rank);
      if (detail.size() < 400)
        detail += fmt::format("{}rank {} on {} silent for {:.1f} s", detail.empty() ? "" : ", ", rank, host_of(c.name),
                              seconds(now - c.last_heard));
    }
    std::string msg = fmt::format(
        "rank(s) {} unreachable: no heartbeat on the watch channel ({}); their host is down, the network is "
        "partitioned, or the process is frozen",
        list_ranks(ranks), detail);
    log::warn("store: {}", msg);
    // The silent ranks' channels are useless now: close them (their requests too) after the
    // epoch is failed, so the failure names them rather than a closed connection.
    fail_epoch(epoch, {ErrorKind::PeerLost, ranks.empty() ? -1 : ranks.front(), msg});
    for (auto& [rank, id] : silent) {
      if (auto c = conns_.find(id); c != conns_.end()) c->second.said_bye = true;
      close_conn(id, "no heartbeat");
      if (auto ep = epochs_.find(epoch); ep != epochs_.end())
        if (auto q = ep->second.request_of_rank.find(rank); q != ep->second.request_of_rank.end())
          close_conn(q->second, "its watch channel fell silent");
    }
  }
}

void StoreService::on_tick(Clock::time_point now) {
  expire_waiters(now);
  std::vector<int> stale;
  for (auto& [id, c] : conns_)
    if (c.stage != Conn::Stage::Joined && now - c.opened > kHandshakeTimeout) stale.push_back(id);
  for (int id : stale) {
    log::warn("store: dropping {}: no handshake within {} ms", conns_.at(id).name, kHandshakeTimeout.count());
    close_conn(id, "handshake timeout");
  }
  check_liveness(now);
  std::string heartbeat = encode(Pushed{Event::Heartbeat, {}, -1, {}});
  for (auto& [id, c] : conns_) {
    if (c.stage != Conn::Stage::Joined || c.hello.channel != Channel::Watch || now < c.next_heartbeat) continue;
    out_.push_back({id, heartbeat, false});
    c.next_heartbeat = std::max(c.next_heartbeat + heartbeat_period_, now);
  }
}

}  // namespace ringlink
