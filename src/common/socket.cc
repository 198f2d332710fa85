#include "common/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace ringlink::net {
namespace {

[[noreturn]] void fail_errno(const std::string& what) {
  throw SocketError(SocketError::Reason::Other, fmt::format("{}: {}", what, std::strerror(errno)));
}

void set_nonblocking(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

// Waits for `events` on fd; false on timeout.
bool wait_fd(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(deadline.remaining().count()));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) fail_errno("poll");
  }
}

addrinfo* resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_INET;  // the store and launcher speak IPv4 (loopback in tests)
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0)
    throw SocketError(SocketError::Reason::Other,
                      fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc)));
  return res;
}

}  // namespace

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string resolve_ipv4(const std::string& host) {
  addrinfo* res = resolve(host, 0, false);
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
  freeaddrinfo(res);
  return buf;
}

bool is_loopback_ipv4(const std::string& address) { return address.rfind("127.", 0) == 0; }

Fd listen_tcp(const std::string& host, int port, int backlog) {
  addrinfo* res = resolve(host, port, true);
  Fd fd(::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    freeaddrinfo(res);
    fail_errno("socket");
  }
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0) {
    int e = errno;
    freeaddrinfo(res);
    throw SocketError(SocketError::Reason::Other,
                      fmt::format("cannot listen on {}:{}: {}", host, port, std::strerror(e)));
  }
  freeaddrinfo(res);
  if (::listen(fd.get(), backlog) != 0) fail_errno("listen");
  return fd;
}

int local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) fail_errno("getsockname");
  return ntohs(a.sin_port);
}

std::string peer_name(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "?";
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
  return fmt::format("{}:{}", buf, ntohs(a.sin_port));
}

Fd connect_tcp(const std::string& host, int port, Deadline deadline) {
  int last_errno = ETIMEDOUT;
  auto backoff = std::chrono::milliseconds(10);
  for (;;) {
    addrinfo* res = resolve(host, port, false);
    Fd fd(::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      freeaddrinfo(res);
      fail_errno("socket");
    }
    set_nonblocking(fd.get(), true);
    int rc = ::connect(fd.get(), res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      if (wait_fd(fd.get(), POLLOUT, deadline)) {
        socklen_t len = sizeof err;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      } else {
        err = ETIMEDOUT;
      }
    }
    if (err == 0) {
      set_nonblocking(fd.get(), false);
      int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    last_errno = err;
    if (deadline.expired()) break;
    // Refused / unreachable: the server may not be up yet. Retry with a growing pause.
    std::this_thread::sleep_for(std::min(backoff, deadline.remaining()));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
    if (deadline.expired()) break;
  }
  throw SocketError(last_errno == ECONNREFUSED ? SocketError::Reason::Refused : SocketError::Reason::Timeout,
                    fmt::format("cannot connect to {}:{}: {}", host, port, std::strerror(last_errno)));
}

void send_all(int fd, const void* data, size_t n, Deadline deadline) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_fd(fd, POLLOUT, deadline)) throw SocketError(SocketError::Reason::Timeout, "send timed out");
      continue;
    }
    throw SocketError(SocketError::Reason::Closed, fmt::format("send failed: {}", std::strerror(errno)));
  }
}

void recv_all(int fd, void* data, size_t n, Deadline deadline) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
      continue;
    }
    if (r == 0) throw SocketError(SocketError::Reason::Closed, "connection closed by peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_fd(fd, POLLIN, deadline)) throw SocketError(SocketError::Reason::Timeout, "receive timed out");
      continue;
    }
    throw SocketError(SocketError::Reason::Closed, fmt::format("receive failed: {}", std::strerror(errno)));
  }
}

int pick_free_port() {
  Fd fd = listen_tcp("127.0.0.1", 0, 1);
  return local_port(fd.get());
}

}  // namespace ringlink::net
