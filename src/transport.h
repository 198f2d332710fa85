// The transport seam: two-sided, non-blocking messages between registered buffers.
// An algorithm never knows which transport carries it; a transport never knows which
// collective it serves. Implementations: transport/ucx (UCX ucp), transport/verbs (RDMA).
//
// Threading: a transport and its connections are used by one thread at a time (the
// communicator's engine serialises access).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"

namespace ringlink {

// Tags: the engine composes them from an operation's sequence number and step; transports
// carry kTagBits of them and match a receive to a send with the same tag from the same peer.
using Tag = uint64_t;
inline constexpr int kTagBits = 40;

// A buffer known to the transport (pinned and keyed for RDMA, or just remembered for UCX).
class MemoryRegion {
 public:
  MemoryRegion(void* addr, size_t bytes, MemoryKind kind) : addr_(addr), bytes_(bytes), kind_(kind) {}
  virtual ~MemoryRegion() = default;
  void* addr() const { return addr_; }
  size_t bytes() const { return bytes_; }
  MemoryKind kind() const { return kind_; }
  bool contains(const void* p, size_t n) const {
    auto b = reinterpret_cast<uintptr_t>(addr_), q = reinterpret_cast<uintptr_t>(p);
    return q >= b && q + n <= b + bytes_;
  }

 private:
  void* addr_;
  size_t bytes_;
  MemoryKind kind_;
};

// One posted send or receive. Destroying an incomplete request cancels it.
class Request {
 public:
  virtual ~Request() = default;
  // True once complete. Does not progress the transport (call Transport::progress()).
  // Throws ringlink::Error (naming the peer) if the operation failed.
  virtual bool test() = 0;
  // Bytes transferred; for a receive, the size of the message that arrived.
  virtual size_t bytes() const = 0;
};

class Connection {
 public:
  explicit Connection(int peer) : peer_(peer) {}
  virtual ~Connection() = default;
  int peer() const { return peer_; }

  // `mr` may be null: the transport then finds or registers the buffer itself.
  // A receive accepts a message of at most `bytes`; a longer one fails with MismatchError.
  // Messages with the same tag on one connection complete in the order they were posted.
  virtual std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag) = 0;
  virtual std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag) = 0;

 private:
  int peer_;
};

// Physical facts about a transport's links, as NCCL's ncclNetProperties: the cost model turns
// them into algorithm thresholds (docs/collectives.md has the measurements).
struct LinkProperties {
  double latency_us;      // a small message, one way, through the engine
  double bandwidth_gbps;  // one direction, large messages, both directions busy
  bool shared_memory;     // peers are reached through memory on this host, not a network
};

class Transport {
 public:
  virtual ~Transport() = default;

  // "ucx(tcp)", "ucx(shm)", "verbs/mlx5_0:1", "verbs/soft", ...
  virtual std::string name() const = 0;

  // Connecting is two-phase so every rank can publish first and connect after (no ordering
  // deadlocks): endpoint_info(peer) returns the bytes `peer` needs (published through the
  // store); connect(peer, its bytes for us) completes the connection.
  virtual std::vector<std::byte> endpoint_info(int peer) = 0;
  virtual std::unique_ptr<Connection> connect(int peer, std::span<const std::byte> remote_info) = 0;

  virtual std::shared_ptr<MemoryRegion> register_memory(void* ptr, size_t bytes, MemoryKind kind) = 0;

  virtual LinkProperties properties() const = 0;

  // Whether isend/irecv take memory of this kind directly (else the engine stages it to host).
  virtual bool supports(MemoryKind kind) const { return kind == MemoryKind::Host; }

  // Drives communication; returns true when anything completed or moved.
  virtual bool progress() = 0;
};

// What a transport needs to know about its communicator.
struct TransportSetup {
  int rank;
  int world_size;
  int local_rank;
  int local_world_size;
  const Options& options;
};

// Creates the transport that options.transport asks for (Auto: verbs when an active RDMA port
// exists, else UCX), logging why. Throws TransportError when the requested one is unavailable.
std::unique_ptr<Transport> create_transport(const TransportSetup& setup);

// For Transport::connect, once the transport's parser has read the endpoint `peer` published:
// a refused one throws MismatchError when `kind` is Mismatch (another transport or version: the
// likely cause is configuration), else TransportError for malformed bytes; `transport` names
// the endpoint's kind ("verbs", "UCX") in the message.
[[noreturn]] void throw_refused_endpoint(int rank, int peer, const char* transport, ErrorKind kind,
                                         const std::string& why);
// A well-formed one must say it is `peer`'s, for `rank` (it was written `from` rank `to` rank):
// TransportError otherwise.
void require_endpoint_for(int rank, int peer, int from, int to);

}  // namespace ringlink
