// Small blocking-with-deadline TCP helpers for the bootstrap (store, watch channel, launcher).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/clock.h"

namespace ringlink::net {

// Raised by the helpers; callers turn it into a typed ringlink::Error naming rank and peer.
class SocketError : public std::runtime_error {
 public:
  enum class Reason { Timeout, Closed, Refused, Other };
  SocketError(Reason reason, const std::string& what) : std::runtime_error(what), reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

// The IPv4 address `host` resolves to ("10.0.0.1"); SocketError when it does not resolve.
std::string resolve_ipv4(const std::string& host);
bool is_loopback_ipv4(const std::string& address);  // 127.0.0.0/8

// Listens on host:port (port 0 = any free port); SO_REUSEADDR set.
Fd listen_tcp(const std::string& host, int port, int backlog = 128);
int local_port(int fd);
std::string peer_name(int fd);  // "127.0.0.1:41234"

// Connects, retrying refused/unreachable attempts until the deadline (the server may start later).
Fd connect_tcp(const std::string& host, int port, Deadline deadline);

// Whole-buffer I/O; throw SocketError on timeout, EOF or error.
void send_all(int fd, const void* data, size_t n, Deadline deadline);
void recv_all(int fd, void* data, size_t n, Deadline deadline);

// A free TCP port on 127.0.0.1 at the time of the call.
int pick_free_port();

}  // namespace ringlink::net
