#include "bootstrap/store.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "common/log.h"
#include "ringlink/error.h"

namespace ringlink {

using namespace store_protocol;

namespace {

// Constant-time comparison so the token cannot be guessed byte by byte from timing.
bool tokens_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string status_reply(Status s, std::string_view message = {}) {
  return wire::Writer().u8(static_cast<uint8_t>(s)).str(message).take();
}

std::string list_ranks(const std::vector<int>& ranks) {
  // "3" / "3, 5" / "3, 5, 6 and 9 more": bounded so a big job's message stays one line.
  std::vector<int> head(ranks.begin(), ranks.begin() + std::min<size_t>(ranks.size(), 8));
  std::string s = fmt::format("{}", fmt::join(head, ", "));
  if (ranks.size() > head.size()) s += fmt::format(" and {} more", ranks.size() - head.size());
  return s;
}

constexpr milliseconds kReplyTimeout{2000};
constexpr milliseconds kHelloTimeout{10000};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

struct StoreServer::Impl {
  struct Conn {
    net::Fd fd;
    std::string name;
    Clock::time_point accepted = Clock::now();
    bool hello = false;
    Channel channel = Channel::Request;
    int rank = -1;
    uint32_t epoch = 0;
    bool said_bye = false;
    std::string inbuf;
  };
  struct Waiter {
    int conn;
    bool join;        // JoinWait (else Get)
    std::string key;  // Get
    Clock::time_point deadline;
  };
  struct Epoch {
    std::map<std::string, std::string> kv;
    std::map<int, std::string> joined;  // rank -> address it joined from
    std::set<int> watchers;             // conn ids
    std::map<int, int> watcher_of_rank;  // rank -> conn id
    std::optional<std::string> failure;
  };

  std::string token;
  int world_size;
  net::Fd listen_fd;
  int port = 0;
  int wake[2] = {-1, -1};
  std::thread thread;
  std::map<int, Conn> conns;
  int next_conn = 1;
  std::vector<Waiter> waiters;
  std::map<uint32_t, Epoch> epochs;

  std::mutex mu;  // guards the drain state below
  bool draining = false;
  bool stop_now = false;
  Clock::time_point drain_deadline{};
  milliseconds drain_timeout{5000};
  std::atomic<bool> exited{false};

  void poke() {
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(wake[1], &c, 1);
  }

  void reply(int id, const std::string& payload) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    try {
      net::send_frame(it->second.fd.get(), payload, Deadline::after(kReplyTimeout));
    } catch (const net::SocketError& e) {
      log::info("store: dropping {}: {}", it->second.name, e.what());
      close_conn(id);
    }
  }

  // Fails every pending wait of the epoch and tells its watchers.
  void fail_epoch(uint32_t epoch, Event kind, int rank, const std::string& message) {
    Epoch& ep = epochs[epoch];
    if (!ep.failure) ep.failure = message;
    std::vector<Waiter> keep;
    std::vector<int> failed;
    for (auto& w : waiters) {
      auto c = conns.find(w.conn);
      if (c != conns.end() && c->second.epoch == epoch)
        failed.push_back(w.conn);
      else
        keep.push_back(w);
    }
    waiters.swap(keep);
    for (int id : failed) reply(id, status_reply(Status::Error, message));
    std::string push = wire::Writer().u8(static_cast<uint8_t>(kind)).i32(rank).str(message).take();
    for (int id : std::set<int>(ep.watchers)) reply(id, push);
  }

  void close_conn(int id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn c = std::move(it->second);
    conns.erase(it);
    std::erase_if(waiters, [&](const Waiter& w) { return w.conn == id; });
    if (!c.hello) return;
    Epoch& ep = epochs[c.epoch];
    if (c.channel == Channel::Watch) {
      ep.watchers.erase(id);
      if (ep.watcher_of_rank[c.rank] == id) ep.watcher_of_rank.erase(c.rank);
      if (!c.said_bye) {
        std::string msg = fmt::format("rank {} exited or was killed (its connection to the store closed)", c.rank);
        log::warn("store: {}", msg);
        fail_epoch(c.epoch, Event::Lost, c.rank, msg);
      }
    }
  }

  void handle_hello(int id, wire::Reader& r) {
    Conn& c = conns[id];
    std::string tok = r.str();
    int rank = r.i32();
    int world = r.i32();
    uint32_t epoch = r.u32();
    auto channel = static_cast<Channel>(r.u8());
    if (!tokens_equal(tok, token)) {
      log::warn("store: refused connection from {}: wrong job token (rank {} claims to belong to this job)",
                c.name, rank);
      reply(id, status_reply(Status::Error, "refused: wrong job token (RINGLINK_JOB_TOKEN differs from rank 0's)"));
      close_conn(id);
      return;
    }
    Epoch& ep = epochs[epoch];
    std::string problem;
    if (world != world_size) {
      problem = fmt::format("ranks disagree on WORLD_SIZE: rank {} has {}, rank 0 has {}", rank, world, world_size);
    } else if (rank < 0 || rank >= world_size) {
      problem = fmt::format("rank id {} is out of range for WORLD_SIZE={} (from {})", rank, world_size, c.name);
    } else if (channel == Channel::Request && ep.joined.count(rank)) {
      problem = fmt::format("rank id {} is used twice: joined from {} and again from {}", rank, ep.joined[rank],
                            c.name);
    } else if (channel == Channel::Watch && ep.watcher_of_rank.count(rank)) {
      problem = fmt::format("rank id {} is used twice (second watch channel from {})", rank, c.name);
    }
    if (!problem.empty()) {
      log::warn("store: {}", problem);
      reply(id, status_reply(Status::Error, problem));
      close_conn(id);
      fail_epoch(epoch, Event::Failed, rank, problem);
      return;
    }
    c.hello = true;
    c.rank = rank;
    c.epoch = epoch;
    c.channel = channel;
    if (channel == Channel::Request) {
      ep.joined[rank] = c.name;
      satisfy_join_waiters(epoch);
    } else {
      ep.watchers.insert(id);
      ep.watcher_of_rank[rank] = id;
    }
    reply(id, status_reply(ep.failure ? Status::Error : Status::Ok, ep.failure.value_or("")));
  }

  std::vector<int> missing_ranks(const Epoch& ep) const {
    std::vector<int> missing;
    for (int r = 0; r < world_size; ++r)
      if (!ep.joined.count(r)) missing.push_back(r);
    return missing;
  }

  void satisfy_join_waiters(uint32_t epoch) {
    Epoch& ep = epochs[epoch];
    if (static_cast<int>(ep.joined.size()) != world_size) return;
    std::vector<int> ready;
    std::erase_if(waiters, [&](const Waiter& w) {
      auto c = conns.find(w.conn);
      bool hit = w.join && c != conns.end() && c->second.epoch == epoch;
      if (hit) ready.push_back(w.conn);
      return hit;
    });
    for (int id : ready) reply(id, status_reply(Status::Ok));
  }

  void satisfy_get_waiters(uint32_t epoch, const std::string& key, const std::string& value) {
    std::vector<int> ready;
    std::erase_if(waiters, [&](const Waiter& w) {
      auto c = conns.find(w.conn);
      bool hit = !w.join && w.key == key && c != conns.end() && c->second.epoch == epoch;
      if (hit) ready.push_back(w.conn);
      return hit;
    });
    std::string payload = wire::Writer().u8(static_cast<uint8_t>(Status::Ok)).str(value).take();
    for (int id : ready) reply(id, payload);
  }

  void handle_request(int id, const std::string& frame) {
    wire::Reader r(frame);
    auto op = static_cast<Op>(r.u8());
    if (!conns[id].hello) {
      if (op != Op::Hello) {
        reply(id, status_reply(Status::Error, "expected HELLO"));
        close_conn(id);
        return;
      }
      handle_hello(id, r);
      return;
    }
    Conn& c = conns[id];
    Epoch& ep = epochs[c.epoch];
    if (op == Op::Bye) {
      c.said_bye = true;
      return;
    }
    if (ep.failure) {
      reply(id, status_reply(Status::Error, *ep.failure));
      return;
    }
    switch (op) {
      case Op::Set: {
        std::string key = r.str();
        std::string value = r.str();
        ep.kv[key] = value;
        reply(id, status_reply(Status::Ok));
        satisfy_get_waiters(c.epoch, key, value);
        break;
      }
      case Op::Get: {
        std::string key = r.str();
        milliseconds timeout(r.u32());
        auto it = ep.kv.find(key);
        if (it != ep.kv.end())
          reply(id, wire::Writer().u8(static_cast<uint8_t>(Status::Ok)).str(it->second).take());
        else
          waiters.push_back({id, false, key, Clock::now() + timeout});
        break;
      }
      case Op::Add: {
        std::string key = r.str();
        int64_t delta = r.i64();
        int64_t value = delta;
        auto it = ep.kv.find(key);
        if (it != ep.kv.end()) value += std::stoll(it->second);
        ep.kv[key] = std::to_string(value);
        reply(id, wire::Writer().u8(static_cast<uint8_t>(Status::Ok)).i64(value).take());
        satisfy_get_waiters(c.epoch, key, ep.kv[key]);
        break;
      }
      case Op::Check: {
        std::string key = r.str();
        reply(id, status_reply(ep.kv.count(key) ? Status::Ok : Status::Timeout));
        break;
      }
      case Op::JoinWait: {
        milliseconds timeout(r.u32());
        if (static_cast<int>(ep.joined.size()) == world_size)
          reply(id, status_reply(Status::Ok));
        else
          waiters.push_back({id, true, {}, Clock::now() + timeout});
        break;
      }
      default:
        reply(id, status_reply(Status::Error, fmt::format("unknown request {}", static_cast<int>(op))));
    }
  }

  void expire_waiters() {
    auto now = Clock::now();
    std::vector<Waiter> expired;
    std::erase_if(waiters, [&](const Waiter& w) {
      bool hit = w.deadline <= now;
      if (hit) expired.push_back(w);
      return hit;
    });
    for (auto& w : expired) {
      auto c = conns.find(w.conn);
      if (c == conns.end()) continue;
      std::string msg;
      if (w.join) {
        msg = fmt::format("rank(s) {} never joined", list_ranks(missing_ranks(epochs[c->second.epoch])));
      } else {
        msg = fmt::format("key '{}' was never set", w.key);
      }
      reply(w.conn, status_reply(Status::Timeout, msg));
    }
    // Connections that never said HELLO are dropped (port scanners, stray clients).
    std::vector<int> silent;
    for (auto& [id, c] : conns)
      if (!c.hello && now - c.accepted > kHelloTimeout) silent.push_back(id);
    for (int id : silent) {
      log::warn("store: dropping {}: no HELLO within {} ms", conns[id].name, kHelloTimeout.count());
      close_conn(id);
    }
  }

  void read_from(int id) {
    Conn& c = conns[id];
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        c.inbuf.append(buf, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buf) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      close_conn(id);  // EOF or error
      return;
    }
    // Parse every complete frame.
    for (;;) {
      auto it = conns.find(id);
      if (it == conns.end()) return;
      std::string& in = it->second.inbuf;
      if (in.size() < 4) return;
      uint32_t len;
      std::memcpy(&len, in.data(), 4);
      if (len > (64u << 20)) {
        log::warn("store: dropping {}: oversized frame", it->second.name);
        close_conn(id);
        return;
      }
      if (in.size() < 4 + size_t{len}) return;
      std::string frame = in.substr(4, len);
      in.erase(0, 4 + size_t{len});
      try {
        handle_request(id, frame);
      } catch (const std::exception& e) {
        log::warn("store: dropping {}: {}", it->second.name, e.what());
        close_conn(id);
        return;
      }
    }
  }

  void run() {
    for (;;) {
      bool draining_now;
      Clock::time_point drain_at;
      {
        std::lock_guard lk(mu);
        if (stop_now) break;
        draining_now = draining;
        drain_at = drain_deadline;
      }
      // After a failed job (mismatch, lost rank) stay until the deadline, so ranks that arrive
      // late still hear why instead of finding no one at the port.
      bool any_failed = std::any_of(epochs.begin(), epochs.end(), [](const auto& e) { return e.second.failure.has_value(); });
      if (draining_now && ((conns.empty() && !any_failed) || Clock::now() >= drain_at)) break;

      std::vector<pollfd> fds;
      std::vector<int> ids;
      fds.push_back({wake[0], POLLIN, 0});
      fds.push_back({listen_fd.get(), POLLIN, 0});
      for (auto& [id, c] : conns) {
        fds.push_back({c.fd.get(), POLLIN, 0});
        ids.push_back(id);
      }
      auto next = Clock::now() + std::chrono::seconds(1);
      for (auto& w : waiters) next = std::min(next, w.deadline);
      if (draining_now) next = std::min(next, drain_at);
      int timeout_ms = static_cast<int>(
          std::max<int64_t>(0, std::chrono::duration_cast<milliseconds>(next - Clock::now()).count() + 1));
      int rc = ::poll(fds.data(), fds.size(), timeout_ms);
      if (rc < 0 && errno != EINTR) {
        log::warn("store: poll failed: {}", std::strerror(errno));
        break;
      }
      if (rc > 0) {
        if (fds[0].revents) {
          char drain[64];
          while (::read(wake[0], drain, sizeof drain) > 0) {
          }
        }
        if (fds[1].revents & POLLIN) {
          int fd = ::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
          if (fd >= 0) {
            Conn c;
            c.fd = net::Fd(fd);
            c.name = net::peer_name(fd);
            conns.emplace(next_conn++, std::move(c));
          }
        }
        for (size_t i = 2; i < fds.size(); ++i)
          if (fds[i].revents) read_from(ids[i - 2]);
      }
      expire_waiters();
    }
    conns.clear();
    exited = true;
  }
};

StoreServer::StoreServer(const std::string& bind_host, int port, std::string token, int world_size)
    : impl_(std::make_unique<Impl>()) {
  impl_->token = std::move(token);
  impl_->world_size = world_size;
  impl_->listen_fd = net::listen_tcp(bind_host, port);
  impl_->port = net::local_port(impl_->listen_fd.get());
  if (::pipe2(impl_->wake, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
  impl_->thread = std::thread([this] { impl_->run(); });
  log::info("store: serving on {}:{} for {} ranks", bind_host, impl_->port, world_size);
}

StoreServer::~StoreServer() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->draining = true;
    impl_->drain_deadline = Clock::now() + impl_->drain_timeout;
  }
  impl_->poke();
  if (impl_->thread.joinable()) impl_->thread.join();
  ::close(impl_->wake[0]);
  ::close(impl_->wake[1]);
}

int StoreServer::port() const { return impl_->port; }

void StoreServer::set_drain_timeout(milliseconds t) {
  std::lock_guard lk(impl_->mu);
  impl_->drain_timeout = t;
}

std::shared_ptr<StoreServer> StoreServer::acquire(const std::string& bind_host, int port, const std::string& token,
                                                  int world_size) {
  // One server per port per process: communicators that rank 0 creates one after another
  // (or side by side) share it, each in its own epoch. Keeping it in the registry until the
  // process exits means a rank still connecting to a finished communicator's server never
  // meets a closed port.
  static std::mutex mu;
  static std::map<int, std::shared_ptr<StoreServer>> servers;
  std::lock_guard lk(mu);
  auto it = servers.find(port);
  if (it != servers.end() && !it->second->impl_->exited) {
    if (!tokens_equal(it->second->impl_->token, token) || it->second->impl_->world_size != world_size)
      throw InvalidArgumentError(0, -1, "bootstrap",
                                 fmt::format("a store with another job token or WORLD_SIZE already serves port {}",
                                             port));
    return it->second;
  }
  auto server = std::make_shared<StoreServer>(bind_host, port, token, world_size);
  if (port != 0) servers[port] = server;
  return server;
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

namespace {

net::Fd open_channel(const StoreIdentity& id, Channel channel, Deadline deadline, const char* what) {
  net::Fd fd;
  try {
    fd = net::connect_tcp(id.host, id.port, deadline);
  } catch (const net::SocketError& e) {
    throw TimeoutError(id.rank, 0, "bootstrap",
                       fmt::format("could not reach the rendezvous store of rank 0 at {}:{} within the deadline: {}",
                                   id.host, id.port, e.what()));
  }
  std::string hello = wire::Writer()
                          .u8(static_cast<uint8_t>(Op::Hello))
                          .str(id.token)
                          .i32(id.rank)
                          .i32(id.world_size)
                          .u32(id.epoch)
                          .u8(static_cast<uint8_t>(channel))
                          .take();
  std::string reply;
  try {
    net::send_frame(fd.get(), hello, deadline);
    reply = net::recv_frame(fd.get(), Deadline::after(std::max(deadline.remaining(), kReplyTimeout)));
  } catch (const net::SocketError& e) {
    throw TransportError(id.rank, 0, "bootstrap",
                         fmt::format("{} handshake with the store at {}:{} failed: {} (a wrong RINGLINK_JOB_TOKEN "
                                     "makes rank 0 close the connection)",
                                     what, id.host, id.port, e.what()));
  }
  wire::Reader r(reply);
  auto status = static_cast<Status>(r.u8());
  std::string message = r.str();
  if (status != Status::Ok) {
    if (message.find("token") != std::string::npos)
      throw InvalidArgumentError(id.rank, 0, "bootstrap", message);
    throw MismatchError(id.rank, -1, "bootstrap", message);
  }
  return fd;
}

}  // namespace

StoreClient::StoreClient(StoreIdentity id, Deadline connect_deadline) : id_(std::move(id)) {
  fd_ = open_channel(id_, Channel::Request, connect_deadline, "request channel");
}

StoreClient::~StoreClient() = default;

std::string StoreClient::request(const std::string& payload, const char* operation, milliseconds server_wait) {
  std::lock_guard lk(mu_);
  if (!fd_.valid())
    throw PeerLostError(id_.rank, 0, operation, "the connection to the rendezvous store is closed");
  try {
    net::send_frame(fd_.get(), payload, Deadline::after(kReplyTimeout));
    // The server answers a wait at its deadline; allow it that much plus a margin.
    return net::recv_frame(fd_.get(), Deadline::after(server_wait + kReplyTimeout));
  } catch (const net::SocketError& e) {
    fd_.reset();
    if (e.reason() == net::SocketError::Reason::Timeout)
      throw TimeoutError(id_.rank, 0, operation,
                         fmt::format("the rendezvous store on rank 0 did not answer: {}", e.what()));
    throw PeerLostError(id_.rank, 0, operation,
                        fmt::format("lost the rendezvous store on rank 0 ({}:{}): {}", id_.host, id_.port, e.what()));
  }
}

namespace {
void check_status(const StoreIdentity& id, wire::Reader& r, const char* operation, int peer) {
  auto status = static_cast<Status>(r.u8());
  if (status == Status::Ok) return;
  std::string message = r.str();
  if (status == Status::Timeout) throw TimeoutError(id.rank, peer, operation, message);
  if (message.find("exited or was killed") != std::string::npos) throw PeerLostError(id.rank, peer, operation, message);
  throw MismatchError(id.rank, peer, operation, message);
}
}  // namespace

void StoreClient::set(const std::string& key, const std::string& value) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::Set)).str(key).str(value).take(),
                              "store set", milliseconds(0));
  wire::Reader r(reply);
  check_status(id_, r, "store set", 0);
}

std::string StoreClient::get(const std::string& key, milliseconds timeout) {
  uint32_t t = static_cast<uint32_t>(std::clamp<int64_t>(timeout.count(), 0, UINT32_MAX));
  std::string reply =
      request(wire::Writer().u8(static_cast<uint8_t>(Op::Get)).str(key).u32(t).take(), "store get", timeout);
  wire::Reader r(reply);
  auto status = static_cast<Status>(r.u8());
  std::string value = r.str();
  if (status == Status::Ok) return value;
  wire::Reader again(reply);
  check_status(id_, again, "store get", -1);
  return {};
}

bool StoreClient::check(const std::string& key) {
  std::string reply =
      request(wire::Writer().u8(static_cast<uint8_t>(Op::Check)).str(key).take(), "store check", milliseconds(0));
  wire::Reader r(reply);
  auto status = static_cast<Status>(r.u8());
  if (status == Status::Error) throw MismatchError(id_.rank, -1, "store check", r.str());
  return status == Status::Ok;
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::Add)).str(key).i64(delta).take(),
                              "store add", milliseconds(0));
  wire::Reader r(reply);
  auto status = static_cast<Status>(r.u8());
  if (status != Status::Ok) throw MismatchError(id_.rank, -1, "store add", r.str());
  return r.i64();
}

void StoreClient::wait_for_all_ranks(milliseconds timeout) {
  uint32_t t = static_cast<uint32_t>(std::clamp<int64_t>(timeout.count(), 0, UINT32_MAX));
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::JoinWait)).u32(t).take(), "bootstrap",
                              timeout);
  wire::Reader r(reply);
  auto status = static_cast<Status>(r.u8());
  if (status == Status::Ok) return;
  std::string message = r.str();
  if (status == Status::Timeout) {
    // Name the first missing rank as the peer; the message lists all of them.
    int peer = -1;
    std::sscanf(message.c_str(), "rank(s) %d", &peer);
    throw TimeoutError(id_.rank, peer, "bootstrap",
                       fmt::format("{} within {} ms (WORLD_SIZE={})", message, timeout.count(), id_.world_size));
  }
  throw MismatchError(id_.rank, -1, "bootstrap", message);
}

void StoreClient::barrier(const std::string& name, milliseconds timeout) {
  std::string key = "barrier/" + name;
  int64_t arrived = add(key, 1);
  if (arrived == id_.world_size) set(key + "/done", "1");
  try {
    get(key + "/done", timeout);
  } catch (const TimeoutError&) {
    int64_t n = add(key, 0);
    throw TimeoutError(id_.rank, -1, "barrier",
                       fmt::format("only {} of {} ranks reached '{}' within {} ms", n, id_.world_size, name,
                                   timeout.count()));
  }
}

WatchChannel::WatchChannel(const StoreIdentity& id, Deadline connect_deadline) : id_(id) {
  fd_ = open_channel(id_, Channel::Watch, connect_deadline, "watch channel");
}

WatchChannel::~WatchChannel() = default;

WatchChannel::Event WatchChannel::read_event() {
  Event ev;
  try {
    std::string frame = net::recv_frame(fd_.get(), Deadline::after(kReplyTimeout));
    wire::Reader r(frame);
    auto kind = static_cast<store_protocol::Event>(r.u8());
    ev.lost = kind == store_protocol::Event::Lost;
    ev.rank = r.i32();
    ev.message = r.str();
  } catch (const std::exception& e) {
    ev.lost = true;
    ev.rank = 0;
    ev.message = fmt::format("rank 0 exited or was killed (its rendezvous store at {}:{} closed: {})", id_.host,
                             id_.port, e.what());
    fd_.reset();
  }
  return ev;
}

void WatchChannel::bye() {
  if (!fd_.valid()) return;
  try {
    net::send_frame(fd_.get(), wire::Writer().u8(static_cast<uint8_t>(Op::Bye)).take(), Deadline::after(kReplyTimeout));
  } catch (const net::SocketError&) {
  }
  fd_.reset();
}

}  // namespace ringlink
