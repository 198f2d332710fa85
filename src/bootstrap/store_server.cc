#include "bootstrap/store_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bootstrap/store_auth.h"
#include "bootstrap/store_protocol.h"
#include "bootstrap/store_service.h"
#include "bootstrap/wire.h"
#include "common/log.h"
#include "common/socket.h"
#include "ringlink/error.h"

namespace ringlink {

using namespace store_protocol;

namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Replies a connection has not read yet; past this it is dropped (it is not reading them).
constexpr size_t kMaxUnsentBytes = 32u << 20;
// How long a connection the service closed may take to receive its last reply.
constexpr milliseconds kCloseGrace{1000};

}  // namespace

struct StoreServer::Impl {
  struct Conn {
    net::Fd fd;
    std::string name;
    wire::FrameReader frames{kMaxHandshakeFrameBytes};
    std::string out;  // framed bytes not yet sent
    bool closing = false;  // the service closed it: send what is queued, then close
    Clock::time_point close_by{};
  };

  Impl(std::string token, int world_size, milliseconds liveness)
      : service(StoreService::Config{token, world_size, liveness, {}}), token(std::move(token)),
        world_size(world_size),
        max_connections(kMaxPendingHandshakes + 2 * static_cast<size_t>(world_size) * kMaxLiveEpochs) {}

  StoreService service;
  std::string token;
  int world_size;
  size_t max_connections;
  net::Fd listen_fd;
  int port = 0;
  int wake[2] = {-1, -1};
  std::thread thread;
  std::map<int, Conn> conns;
  int next_conn = 1;
  Clock::time_point last_refusal_log{};

  std::mutex mu;  // guards the drain state below
  bool draining = false;
  Clock::time_point drain_started{};
  milliseconds drain_timeout{5000};
  std::atomic<bool> exited{false};

  void poke() {
    char c = 1;
    [[maybe_unused]] ssize_t n = ::write(wake[1], &c, 1);
  }

  size_t buffered_bytes() const {
    size_t total = 0;
    for (auto& [id, c] : conns) total += c.frames.buffered() + c.out.size();
    return total;
  }

  // The connection is gone (EOF, error, or dropped here): forget it, and tell the service.
  void drop(int id, std::string_view why) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    if (!it->second.closing) log::info("store: dropping {}: {}", it->second.name, why);
    conns.erase(it);
    service.on_closed(id, Clock::now());
  }

  // Sends what can be sent without blocking; false when the connection failed.
  bool write_some(Conn& c) {
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      return false;
    }
    return true;
  }

  // Moves the service's output onto the connections and sends it, until nothing is left to do
  // (a failed send is a closed connection, which the service may answer with more output).
  void pump() {
    for (;;) {
      std::vector<StoreService::Output> outputs = service.take_output();
      std::vector<std::pair<int, std::string>> failed;
      auto now = Clock::now();
      for (auto& o : outputs) {
        auto it = conns.find(o.conn);
        if (it == conns.end() || it->second.closing) continue;
        Conn& c = it->second;
        if (!o.payload.empty()) c.out += wire::frame(o.payload);
        if (o.close) {
          c.closing = true;
          c.close_by = now + kCloseGrace;
        }
      }
      for (auto& [id, c] : conns) {
        if (!write_some(c)) {
          failed.push_back({id, "send failed"});
        } else if (c.out.size() > kMaxUnsentBytes) {
          failed.push_back({id, fmt::format("{} bytes of replies unread", c.out.size())});
        }
      }
      std::vector<int> done;
      for (auto& [id, c] : conns)
        if (c.closing && (c.out.empty() || now >= c.close_by)) done.push_back(id);
      for (int id : done) conns.erase(id);
      if (failed.empty()) return;
      for (auto& [id, why] : failed) drop(id, why);
    }
  }

  void accept_connections() {
    for (int k = 0; k < 64; ++k) {
      int fd = ::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;  // EAGAIN, or out of descriptors: try again next round
      net::Fd owned(fd);
      std::string name = net::peer_name(fd);
      if (conns.size() >= max_connections) {
        auto now = Clock::now();
        if (now - last_refusal_log > std::chrono::seconds(1)) {
          log::warn("store: refused connection from {}: {} connections open already", name, conns.size());
          last_refusal_log = now;
        }
        continue;  // closes it
      }
      int id = next_conn++;
      Conn c;
      c.fd = std::move(owned);
      c.name = name;
      conns.emplace(id, std::move(c));
      service.on_open(id, std::move(name), Clock::now());
      pump();
    }
  }

  void read_from(int id) {
    char buf[kReadChunk];
    for (int round = 0; round < 16; ++round) {  // then let the other connections have a turn
      auto it = conns.find(id);
      if (it == conns.end() || it->second.closing) return;
      ssize_t n = ::recv(it->second.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) return drop(id, n == 0 ? "closed by peer" : std::strerror(errno));
      it->second.frames.append({buf, static_cast<size_t>(n)});
      // Handle every complete frame before reading more, so what one connection makes the
      // store hold stays within a frame limit and a read.
      for (;;) {
        auto c = conns.find(id);
        if (c == conns.end() || c->second.closing) return;
        std::optional<std::string> frame;
        try {
          c->second.frames.set_limit(service.frame_limit(id));
          frame = c->second.frames.next();
        } catch (const wire::FormatError& e) {
          log::warn("store: dropping {}: {}", c->second.name, e.what());
          return drop(id, e.what());
        }
        if (!frame) break;
        service.on_frame(id, *frame, Clock::now());
        pump();
      }
      auto c = conns.find(id);
      if (c != conns.end() && c->second.frames.buffered() > kReadChunk && buffered_bytes() > kMaxBufferedBytes) {
        log::warn("store: dropping {}: the store buffers more than {} bytes", c->second.name, kMaxBufferedBytes);
        return drop(id, "buffer limit");
      }
      if (static_cast<size_t>(n) < sizeof buf) return;
    }
  }

  // When the destructor's wait ends: every rank left, or the deadline. After a failed job,
  // kFailedDrain whatever: ranks still joining hear why instead of finding the port closed,
  // and the survivors' exit waits no longer than that.
  bool drained(Clock::time_point now) {
    std::lock_guard lk(mu);
    if (!draining) return false;
    if (service.any_failed()) return now >= drain_started + std::min(drain_timeout, kFailedDrain);
    return service.joined_connections() == 0 || now >= drain_started + drain_timeout;
  }

  void run() {
    for (;;) {
      auto now = Clock::now();
      if (drained(now)) break;
      std::vector<pollfd> fds;
      std::vector<int> ids;
      fds.push_back({wake[0], POLLIN, 0});
      fds.push_back({listen_fd.get(), POLLIN, 0});
      for (auto& [id, c] : conns) {
        short events = c.closing ? 0 : POLLIN;
        if (!c.out.empty()) events |= POLLOUT;
        fds.push_back({c.fd.get(), events, 0});
        ids.push_back(id);
      }
      auto next = std::min(now + std::chrono::milliseconds(100), service.next_deadline());
      int timeout_ms = static_cast<int>(
          std::max<int64_t>(0, std::chrono::duration_cast<milliseconds>(next - now).count() + 1));
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
        if (fds[1].revents & POLLIN) accept_connections();
        for (size_t i = 2; i < fds.size(); ++i) {
          if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_from(ids[i - 2]);
        }
      }
      service.on_tick(Clock::now());
      pump();
    }
    conns.clear();
    exited = true;
  }
};

StoreServer::StoreServer(const std::string& bind_host, int port, std::string token, int world_size,
                         milliseconds liveness_timeout)
    : impl_(std::make_unique<Impl>(std::move(token), world_size, liveness_timeout)) {
  store_auth::initialize();
  impl_->listen_fd = net::listen_tcp(bind_host, port);
  impl_->port = net::local_port(impl_->listen_fd.get());
  int flags = ::fcntl(impl_->listen_fd.get(), F_GETFL, 0);
  ::fcntl(impl_->listen_fd.get(), F_SETFL, flags | O_NONBLOCK);
  if (::pipe2(impl_->wake, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2 failed");
  impl_->thread = std::thread([this] { impl_->run(); });
  log::info("store: serving on {}:{} for {} ranks", bind_host, impl_->port, world_size);
}

StoreServer::~StoreServer() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->draining = true;
    impl_->drain_started = Clock::now();
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
                                                  int world_size, milliseconds liveness_timeout) {
  // One server per port per process: communicators that rank 0 creates one after another
  // (or side by side) share it, each in its own epoch. Keeping it in the registry until the
  // process exits means a rank still connecting to a finished communicator's server never
  // meets a closed port.
  store_auth::initialize();  // before the registry: see store_auth.h
  static std::mutex mu;
  static std::map<int, std::shared_ptr<StoreServer>> servers;
  std::lock_guard lk(mu);
  auto it = servers.find(port);
  if (it != servers.end() && !it->second->impl_->exited) {
    if (!store_auth::proofs_equal(it->second->impl_->token, token) || it->second->impl_->world_size != world_size)
      throw InvalidArgumentError(0, -1, "bootstrap",
                                 fmt::format("a store with another job token or WORLD_SIZE already serves port {}",
                                             port));
    return it->second;
  }
  auto server = std::make_shared<StoreServer>(bind_host, port, token, world_size, liveness_timeout);
  if (port != 0) servers[port] = server;
  return server;
}

}  // namespace ringlink
