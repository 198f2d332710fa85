#include "transport/verbs/wire_checks.h"

#include <cstring>

#include <fmt/format.h>

namespace ringlink::verbs::wire {
namespace {

constexpr uint32_t kImmReservedLarge = 0x3ffu << 21;  // bits [30:21] of the large form
constexpr uint32_t kImmStripeBits = 0x3fu << 12;

}  // namespace

std::string check_cts(const CtsEntry& e, uint64_t seq, uint32_t depth, uint64_t eager_sent) {
  const uint64_t slot = (seq - 1) % depth;
  if (e.slot != slot)
    return fmt::format("clear-to-send #{} names FIFO slot {}; it lies in slot {} of {}", seq, e.slot, slot, depth);
  if (e.size > kMaxRemoteBytes)
    return fmt::format("clear-to-send #{} advertises {} bytes, more than any receive can be ({})", seq, e.size,
                       kMaxRemoteBytes);
  if (e.addr + e.size < e.addr)
    return fmt::format("clear-to-send #{} advertises a buffer at {:#x}+{} that wraps around the address space", seq,
                       e.addr, e.size);
  if (e.tag > kMaxWireTag) return fmt::format("clear-to-send #{} carries tag {:#x}, wider than {} bits", seq, e.tag, kTagBits);
  if (std::string why = check_credits(e.eager_released, eager_sent); !why.empty())
    return fmt::format("clear-to-send #{}: {}", seq, why);
  return {};
}

std::string check_imm(uint32_t v, uint32_t depth, uint32_t stripes) {
  const Imm m = decode(v);
  if (m.slot >= depth) return fmt::format("immediate {:#010x} names FIFO slot {} of {}", v, m.slot, depth);
  if (m.small) return {};
  if (v & kImmReservedLarge) return fmt::format("immediate {:#010x} has reserved bits set", v);
  if (m.void_slot && (v & (kImmTruncated | kImmSizeInTable | kImmStripeBits)))
    return fmt::format("immediate {:#010x} voids its slot and says more", v);
  if (m.truncated && (!m.size_in_table || m.stripes != 1))
    return fmt::format("immediate {:#010x} reports a truncated message without its size, or in stripes", v);
  if (m.stripes > stripes)
    return fmt::format("immediate {:#010x} announces {} stripes over {} queue pair(s)", v, m.stripes, stripes);
  return {};
}

Arrival arrival(const Imm& m, uint64_t posted, uint32_t qps, uint64_t table_word) {
  Arrival a;
  if (m.truncated) {
    // Nothing landed: the message is larger than the receive, which fails naming both sizes.
    if (table_word <= posted) {
      a.why = fmt::format("it reported a truncated message of {} bytes for a {}-byte receive", table_word, posted);
      return a;
    }
    a.kind = Arrival::Kind::TooLong;
    a.size = table_word;
    return a;
  }
  const uint64_t size = m.small ? m.size : m.size_in_table ? table_word : posted;
  if (size > posted) {
    a.why = fmt::format("it reported {} bytes written into a {}-byte receive", size, posted);
    return a;
  }
  // The sender splits a message of `size` bytes into exactly this many stripes.
  if (m.stripes != stripe_count(size, qps)) {
    a.why = fmt::format("it reported {} bytes in {} stripe(s); the protocol sends them in {}", size, m.stripes,
                        stripe_count(size, qps));
    return a;
  }
  a.kind = Arrival::Kind::Delivered;
  a.size = size;
  return a;
}

std::string check_eager(std::span<const std::byte> message, EagerHeader& out) {
  if (message.size() < sizeof(EagerHeader) || message.size() > kEagerSlotBytes)
    return fmt::format("an eager message of {} bytes (a header is {}, a buffer {})", message.size(),
                       sizeof(EagerHeader), kEagerSlotBytes);
  EagerHeader h;
  std::memcpy(&h, message.data(), sizeof h);
  if (h.size != message.size() - sizeof h)
    return fmt::format("an eager message whose header says {} bytes and which carries {}", h.size,
                       message.size() - sizeof h);
  if (h.tag > kMaxWireTag) return fmt::format("an eager message with tag {:#x}, wider than {} bits", h.tag, kTagBits);
  if (h.reserved != 0) return "an eager message with its reserved header word set";
  out = h;
  return {};
}

std::string check_credits(uint64_t released, uint64_t eager_sent) {
  if (released > eager_sent)
    return fmt::format("the peer says it freed {} eager buffers of ours; we sent {}", released, eager_sent);
  return {};
}

}  // namespace ringlink::verbs::wire
