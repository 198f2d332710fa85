// What a peer wrote on the verbs wire (wire.h), checked before it is used: CTS entries, the
// immediates of WRITE WITH IMM, size-table words, eager headers and credit counts. A peer's
// numbers never index our memory, size a copy or name a slot unchecked.
//
// Pure functions over values and byte spans, so tests/fuzz/verbs_wire_fuzz.cc calls them as the
// link does. Each returns an empty string, or what is wrong in words for the error message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "transport.h"
#include "transport/verbs/wire.h"

namespace ringlink::verbs::wire {

// No receive buffer a peer advertises is larger (an HCA maps at most 2^48 bytes of virtual
// address space), and none wraps around the address space.
inline constexpr uint64_t kMaxRemoteBytes = uint64_t{1} << 48;
// Tags the engine composes: kTagBits wide (src/transport.h).
inline constexpr uint64_t kMaxWireTag = (uint64_t{1} << kTagBits) - 1;

// CTS entry number `seq` (already whole: both copies of the sequence read `seq`), as read from
// a FIFO of `depth` slots: it names its own slot, (seq - 1) % depth, advertises a buffer that
// does not wrap and is at most kMaxRemoteBytes, and carries an engine tag. `eager_sent`: the
// eager messages we have sent; the entry cannot have freed more.
std::string check_cts(const CtsEntry& e, uint64_t seq, uint32_t depth, uint64_t eager_sent);

// An immediate as only a sender of this protocol writes one: no reserved bit set, a void names
// nothing but its slot, "truncated" comes with "size in table", at most `stripes` stripes (the
// link's data QPs) and a slot below `depth`.
std::string check_imm(uint32_t v, uint32_t depth, uint32_t stripes);

// What a completed receive of `posted` bytes got, from its (checked) immediate, the link's
// `qps` data QPs and the size-table word at its slot (read only when the immediate says the
// size is there: `table_word`).
struct Arrival {
  enum class Kind { Delivered, TooLong, Invalid };
  Kind kind = Kind::Invalid;
  uint64_t size = 0;  // Delivered: bytes that landed (never more than posted); TooLong: the message's
  std::string why;    // Invalid: how the peer's numbers contradict the receive it completed
};
Arrival arrival(const Imm& m, uint64_t posted, uint32_t qps, uint64_t table_word);

// An eager message as it landed (`message`: the bytes the completion reports, at most one eager
// buffer): a whole header whose size matches the payload, within kEagerBytes, and an engine tag.
// On success `out` holds the header.
std::string check_eager(std::span<const std::byte> message, EagerHeader& out);

// The receiver's count of our eager messages it has freed (credit word, or a CTS entry): never
// more than we have sent.
std::string check_credits(uint64_t released, uint64_t eager_sent);

}  // namespace ringlink::verbs::wire
