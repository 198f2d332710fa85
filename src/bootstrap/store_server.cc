#include "bootstrap/store_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "common/log.h"
#include "common/socket.h"
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

std::string list_ranks(const std::vector<int>& ranks) {
  // "3" / "3, 5" / "3, 5, 6 and 9 more": bounded so a big job's message stays one line.
  std::vector<int> head(ranks.begin(), ranks.begin() + std::min<std::ptrdiff_t>(std::ssize(ranks), 8));
  std::string s = fmt::format("{}", fmt::join(head, ", "));
  if (ranks.size() > head.size()) s += fmt::format(" and {} more", ranks.size() - head.size());
  return s;
}

std::string ok_reply() { return reply(Status::Ok).take(); }

constexpr milliseconds kHelloTimeout{10000};

}  // namespace

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
    wire::FrameReader frames{kMaxFrameBytes};
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
    std::optional<Failure> failure;     // the first; every later request of the epoch gets it
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
  Clock::time_point drain_deadline{};
  milliseconds drain_timeout{5000};
  std::atomic<bool> exited{false};

  void poke() {
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(wake[1], &c, 1);
  }

  void send_to(int id, const std::string& payload) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    try {
      wire::send_frame(it->second.fd.get(), payload, Deadline::after(kReplyTimeout));
    } catch (const net::SocketError& e) {
      drop(id, e.what());
    }
  }

  void drop(int id, std::string_view why) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    log::info("store: dropping {}: {}", it->second.name, why);
    close_conn(id);
  }

  // Fails every pending wait of the epoch and tells its watchers.
  void fail_epoch(uint32_t epoch, const Failure& failure) {
    Epoch& ep = epochs[epoch];
    if (!ep.failure) ep.failure = failure;
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
    for (int id : failed) send_to(id, failed_reply(failure));
    Pushed push{failure.kind == ErrorKind::PeerLost ? Event::Lost : Event::Failed, failure.culprit, failure.message};
    std::string frame = encode(push);
    for (int id : std::set<int>(ep.watchers)) send_to(id, frame);
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
        fail_epoch(c.epoch, {ErrorKind::PeerLost, c.rank, msg});
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
      send_to(id, failed_reply({ErrorKind::InvalidArgument, -1,
                                "refused: wrong job token (RINGLINK_JOB_TOKEN differs from rank 0's)"}));
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
      Failure failure{ErrorKind::Mismatch, rank, problem};
      send_to(id, failed_reply(failure));
      close_conn(id);
      fail_epoch(epoch, failure);
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
    send_to(id, ep.failure ? failed_reply(*ep.failure) : ok_reply());
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
    for (int id : ready) send_to(id, ok_reply());
  }

  void satisfy_get_waiters(uint32_t epoch, const std::string& key, const std::string& value) {
    std::vector<int> ready;
    std::erase_if(waiters, [&](const Waiter& w) {
      auto c = conns.find(w.conn);
      bool hit = !w.join && w.key == key && c != conns.end() && c->second.epoch == epoch;
      if (hit) ready.push_back(w.conn);
      return hit;
    });
    std::string payload = reply(Status::Ok).str(value).take();
    for (int id : ready) send_to(id, payload);
  }

  void handle_request(int id, const std::string& frame) {
    wire::Reader r(frame);
    auto op = static_cast<Op>(r.u8());
    if (!conns[id].hello) {
      if (op != Op::Hello) {
        send_to(id, failed_reply({ErrorKind::InvalidArgument, -1, "expected HELLO"}));
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
      send_to(id, failed_reply(*ep.failure));
      return;
    }
    switch (op) {
      case Op::Set: {
        std::string key = r.str();
        std::string value = r.str();
        ep.kv[key] = value;
        send_to(id, ok_reply());
        satisfy_get_waiters(c.epoch, key, value);
        break;
      }
      case Op::Get: {
        std::string key = r.str();
        milliseconds timeout(r.u32());
        auto it = ep.kv.find(key);
        if (it != ep.kv.end())
          send_to(id, reply(Status::Ok).str(it->second).take());
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
        send_to(id, reply(Status::Ok).i64(value).take());
        satisfy_get_waiters(c.epoch, key, ep.kv[key]);
        break;
      }
      case Op::Check: {
        std::string key = r.str();
        send_to(id, reply(ep.kv.count(key) ? Status::Ok : Status::Absent).take());
        break;
      }
      case Op::JoinWait: {
        milliseconds timeout(r.u32());
        if (static_cast<int>(ep.joined.size()) == world_size)
          send_to(id, ok_reply());
        else
          waiters.push_back({id, true, {}, Clock::now() + timeout});
        break;
      }
      default:
        send_to(id, failed_reply({ErrorKind::InvalidArgument, -1,
                                  fmt::format("unknown request {}", static_cast<int>(op))}));
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
      Failure timeout{ErrorKind::Timeout, -1, {}};
      if (w.join) {
        std::vector<int> missing = missing_ranks(epochs[c->second.epoch]);
        if (!missing.empty()) timeout.culprit = missing.front();
        timeout.message = fmt::format("rank(s) {} never joined", list_ranks(missing));
      } else {
        timeout.message = fmt::format("key '{}' was never set", w.key);
      }
      send_to(w.conn, failed_reply(timeout));
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
        c.frames.append({buf, static_cast<size_t>(n)});
        if (static_cast<size_t>(n) < sizeof buf) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      close_conn(id);  // EOF or error
      return;
    }
    // Handle every complete frame; a request may close the connection.
    for (;;) {
      auto it = conns.find(id);
      if (it == conns.end()) return;
      try {
        std::optional<std::string> frame = it->second.frames.next();
        if (!frame) return;
        handle_request(id, *frame);
      } catch (const std::exception& e) {
        if (conns.count(id)) log::warn("store: dropping {}: {}", conns[id].name, e.what());
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

}  // namespace ringlink
