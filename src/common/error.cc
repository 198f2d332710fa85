// ringlink::Error: the message every typed error carries, and throw_error.
#include "ringlink/error.h"

#include <fmt/format.h>

namespace ringlink {
namespace {

std::string format_error(ErrorKind kind, int rank, int peer, const std::string& op, const std::string& detail) {
  std::string who = rank >= 0 ? fmt::format("rank {}", rank) : std::string("ringlink");
  std::string with = peer >= 0 ? fmt::format(" with peer {}", peer) : std::string();
  return fmt::format("{}: {} in {}{}: {}", who, to_string(kind), op, with, detail);
}

}  // namespace

Error::Error(ErrorKind kind, int rank, int peer, std::string operation, std::string detail)
    : std::runtime_error(format_error(kind, rank, peer, operation, detail)),
      kind_(kind),
      rank_(rank),
      peer_(peer),
      operation_(std::move(operation)),
      detail_(std::move(detail)) {}

void throw_error(ErrorKind kind, int rank, int peer, std::string operation, std::string detail) {
  switch (kind) {
    case ErrorKind::Timeout: throw TimeoutError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::PeerLost: throw PeerLostError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::Mismatch: throw MismatchError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::InvalidArgument: throw InvalidArgumentError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::Transport: throw TransportError(rank, peer, std::move(operation), std::move(detail));
  }
  throw TransportError(rank, peer, std::move(operation), std::move(detail));
}

}  // namespace ringlink
