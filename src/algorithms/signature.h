// The signature every collective carries: what this rank was asked to do, sent to its ring
// neighbours in the collective's first step and checked before any received data is used, so
// ranks that called different collectives fail with MismatchError instead of a wrong result.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "comm/operation.h"
#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"

namespace ringlink::algo {

enum class CollectiveKind : uint8_t { Allreduce = 1, ReduceScatter, Allgather, Broadcast, Reduce, Barrier };
const char* to_string(CollectiveKind kind);

// Everything that decides a collective's message schedule on a rank (chunk size and algorithm
// thresholds are agreed at creation, so they cannot differ here).
struct Signature {
  uint64_t seq = 0;  // the collective's number on this communicator (modulo the tag blocks)
  CollectiveKind kind = CollectiveKind::Allreduce;
  uint64_t count = 0;  // elements (per rank block for reduce_scatter and allgather)
  DataType type = DataType::Float32;
  ReduceOp op = ReduceOp::Sum;  // reductions only
  int32_t root = 0;             // broadcast and reduce only
  WireDtype wire = WireDtype::Off;  // the compressed wire format the schedule uses, if any
  bool operator==(const Signature&) const = default;
};

// The wire form: four little-endian 64-bit words, the first a magic and version; the last
// holds the root (low 32 bits) and the wire format (the next 8).
inline constexpr size_t kSignatureBytes = 32;
using SignatureWire = std::array<std::byte, kSignatureBytes>;
SignatureWire encode(const Signature& s);
// nullopt when the bytes are not a signature of this version.
std::optional<Signature> decode(std::span<const std::byte> bytes);

// The most a small allreduce carries behind its signature on the signature tag
// (recursive_doubling.h). Every receive on that tag takes a message this large, so a rank that
// called something else reads the peer's signature rather than a truncation error.
inline constexpr size_t kSignedPayloadMaxBytes = 4096;
inline constexpr size_t kSignatureMessageMaxBytes = kSignatureBytes + kSignedPayloadMaxBytes;

// A message where a signature was expected whose bytes are none: raised as a MismatchError once
// the job's verdict has had a moment (a failing peer may abandon its send, and the transport
// may then carry freed memory; the verdict names the real cause).
struct UnreadableSignature : MismatchError {
  using MismatchError::MismatchError;
};

// How long a message that does not fit waits for the signatures that explain it (they were sent
// before any data, so they are normally there already), or an unreadable one for the verdict.
inline constexpr std::chrono::milliseconds kSignatureGrace{1000};

// Checks the signature at the head of a message of `bytes` from `peer`, which should carry
// `payload` more bytes behind it: MismatchError naming both calls when the peer called something
// else, UnreadableSignature when the bytes are no signature or the length does not fit it.
void check_signature(const Signature& mine, int rank, int peer, const std::byte* message, size_t bytes,
                     size_t payload);

// "allreduce(count=1000, float32, sum)"; the fields that do not apply are left out.
std::string describe(const Signature& s);

// The message that names both calls: "rank 0 called ...; rank 1 called ...".
std::string mismatch_message(int rank, const Signature& mine, int peer, const std::string& theirs);

// Wraps a collective's schedule: the signature goes to both ring neighbours when it starts, and
// the schedule advances only once both neighbours' signatures arrived and agree. A disagreement
// is a MismatchError naming both ranks and both calls (the engine reports it to every rank).
// The signature's seq is taken from the operation's tag block when it starts.
std::unique_ptr<detail::Operation> with_signature(std::unique_ptr<detail::Operation> schedule, Signature signature,
                                                  int rank, int size);

}  // namespace ringlink::algo
