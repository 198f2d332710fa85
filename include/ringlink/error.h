// Typed errors. Every message names the rank that raised it, the operation and,
// where one is involved, the peer — so a log line from any rank says what broke where.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace ringlink {

enum class ErrorKind {
  Timeout,          // a deadline passed (a peer is silent, absent or wedged)
  PeerLost,         // a peer process died or its connection broke
  Mismatch,         // ranks disagree (world size, collective arguments, duplicate rank)
  InvalidArgument,  // bad input from the caller or the environment
  Transport,        // the transport failed (UCX / verbs error, registration, ...)
};

std::string_view to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  // peer < 0 when no single peer is involved.
  Error(ErrorKind kind, int rank, int peer, std::string operation, std::string detail);

  ErrorKind kind() const noexcept { return kind_; }
  int rank() const noexcept { return rank_; }
  int peer() const noexcept { return peer_; }
  const std::string& operation() const noexcept { return operation_; }
  const std::string& detail() const noexcept { return detail_; }

 private:
  ErrorKind kind_;
  int rank_;
  int peer_;
  std::string operation_;
  std::string detail_;
};

// One subclass per kind so callers can catch what they handle.
#define RINGLINK_ERROR_CLASS(Name, Kind)                                             \
  class Name : public Error {                                                        \
   public:                                                                           \
    Name(int rank, int peer, std::string operation, std::string detail)              \
        : Error(ErrorKind::Kind, rank, peer, std::move(operation), std::move(detail)) {} \
  };
RINGLINK_ERROR_CLASS(TimeoutError, Timeout)
RINGLINK_ERROR_CLASS(PeerLostError, PeerLost)
RINGLINK_ERROR_CLASS(MismatchError, Mismatch)
RINGLINK_ERROR_CLASS(InvalidArgumentError, InvalidArgument)
RINGLINK_ERROR_CLASS(TransportError, Transport)
#undef RINGLINK_ERROR_CLASS

// Throws the subclass that matches `kind`.
[[noreturn]] void throw_error(ErrorKind kind, int rank, int peer, std::string operation,
                              std::string detail);

}  // namespace ringlink
