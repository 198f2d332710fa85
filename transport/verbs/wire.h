// The verbs transport's wire protocol (docs/transports.md describes it in full):
//
//  - The receiver posts a receive by RDMA-writing a clear-to-send (CTS) entry {address, size,
//    rkey, tag} into the sender's CTS FIFO, a ring of kFifoDepth 64-byte entries in the
//    sender's registered memory. Entry k (k = 1, 2, ...) goes to slot (k - 1) % depth.
//  - An entry carries its sequence number at both ends; the sender takes entry k only when both
//    copies read k, so a torn entry (half written) or a stale one (from the previous lap) is
//    never consumed.
//  - The receiver writes entry k only after the receive that used slot (k - 1) % depth completed,
//    which implies the sender consumed that entry: the FIFO cannot overrun.
//  - Messages of one tag are numbered on both sides (the message sequence number, msn): the k-th
//    send of a tag goes to the k-th receive of that tag. The sender RDMA-WRITEs the data into
//    the buffer the matching entry advertises; the last write of each stripe is a WRITE WITH IMM
//    whose immediate names the slot (kImm* below) and so completes the receive.
//  - Small messages need no clear-to-send: when the sender has no entry for the message yet, it
//    SENDs it eagerly ({tag, msn, size} + data, EagerHeader) into one of kEagerSlots buffers the
//    receiver keeps posted on a control QP, and spends a credit; credits come back with CTS
//    entries and, when those are scarce, a small RDMA WRITE of the receiver's count. An entry
//    that arrives for a message already sent eagerly is answered with a "void" immediate so its
//    slot is freed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace ringlink::verbs::wire {

inline constexpr uint32_t kFifoDepth = 256;
inline constexpr uint32_t kMaxFifoDepth = 4096;  // the immediate names the slot in 12 bits
static_assert(kFifoDepth <= kMaxFifoDepth);

struct alignas(64) CtsEntry {
  uint64_t seq_head;  // written first...
  uint64_t addr;
  uint64_t size;
  uint64_t tag;
  uint32_t rkey;
  uint32_t slot;
  uint64_t msn;            // the receive's number among this tag's receives (0, 1, ...)
  uint64_t eager_released;  // eager buffers the receiver has freed so far (returns credits)
  uint64_t seq_tail;  // ...and last: both equal the entry's sequence number once it is whole
};
static_assert(sizeof(CtsEntry) == 64);

// Sender side: takes whole entries from the FIFO in sequence order.
class CtsReader {
 public:
  CtsReader() = default;
  CtsReader(const CtsEntry* fifo, uint32_t depth) : fifo_(fifo), depth_(depth) {}

  // The next entry, once the remote write of it is complete.
  std::optional<CtsEntry> poll() {
    const uint64_t want = consumed_ + 1;
    const CtsEntry* e = &fifo_[consumed_ % depth_];
    // The HCA writes this memory behind the compiler's back: read it as volatile, sequence first.
    if (__atomic_load_n(&e->seq_head, __ATOMIC_ACQUIRE) != want) return std::nullopt;
    if (__atomic_load_n(&e->seq_tail, __ATOMIC_ACQUIRE) != want) return std::nullopt;
    CtsEntry copy;
    copy.seq_head = want;
    copy.addr = __atomic_load_n(&e->addr, __ATOMIC_RELAXED);
    copy.size = __atomic_load_n(&e->size, __ATOMIC_RELAXED);
    copy.tag = __atomic_load_n(&e->tag, __ATOMIC_RELAXED);
    copy.rkey = __atomic_load_n(&e->rkey, __ATOMIC_RELAXED);
    copy.slot = __atomic_load_n(&e->slot, __ATOMIC_RELAXED);
    copy.msn = __atomic_load_n(&e->msn, __ATOMIC_RELAXED);
    copy.eager_released = __atomic_load_n(&e->eager_released, __ATOMIC_RELAXED);
    // Re-check the tail: had the entry been rewritten meanwhile, the copy would mix two laps.
    if (__atomic_load_n(&e->seq_tail, __ATOMIC_ACQUIRE) != want) return std::nullopt;
    copy.seq_tail = want;
    ++consumed_;
    return copy;
  }

 private:
  const CtsEntry* fifo_ = nullptr;
  uint32_t depth_ = 1;
  uint64_t consumed_ = 0;
};

// Receiver side: which FIFO slots hold an entry whose receive has not completed.
class CtsSlots {
 public:
  explicit CtsSlots(uint32_t depth = kFifoDepth) : busy_(depth, false) {}
  // The next entry may be written once its slot is free.
  bool can_post() const { return !busy_[slot_of(next_seq_)]; }
  uint32_t slot_of(uint64_t seq) const { return static_cast<uint32_t>((seq - 1) % busy_.size()); }
  // Takes the next entry's slot; returns the entry's sequence number.
  uint64_t post() {
    busy_[slot_of(next_seq_)] = true;
    ++outstanding_;
    return next_seq_++;
  }
  void release(uint32_t slot) {
    if (busy_[slot]) --outstanding_;
    busy_[slot] = false;
  }
  uint32_t outstanding() const { return outstanding_; }

 private:
  std::vector<bool> busy_;
  uint64_t next_seq_ = 1;
  uint32_t outstanding_ = 0;
};

// The 32-bit immediate of a WRITE WITH IMM (sent in network byte order).
//   bit 31 = 0 (small):  [30:12] size (< 512 KiB)   [11:0] slot     one stripe
//   bit 31 = 1 (large):  [20] void  [19] truncated  [18] size in table  [17:12] stripes - 1  [11:0] slot
// "Size in table": the sender wrote the message size into the receiver's size table at the slot
// (before this immediate, on the same QP). Neither flag: the message filled the posted buffer.
// Truncated: the message was larger than the posted buffer; nothing was written, the table holds
// its size, and the receive fails with a mismatch.
inline constexpr uint32_t kImmLarge = 1u << 31;
inline constexpr uint32_t kImmVoid = 1u << 20;
inline constexpr uint32_t kImmTruncated = 1u << 19;
inline constexpr uint32_t kImmSizeInTable = 1u << 18;
inline constexpr uint32_t kImmSmallLimit = 1u << 19;

struct Imm {
  uint32_t slot = 0;
  uint32_t stripes = 1;
  bool small = true;
  uint32_t size = 0;  // small form only
  bool size_in_table = false;
  bool truncated = false;
  bool void_slot = false;  // the message went eagerly: the slot is free, nothing else happens
};

inline uint32_t encode_small(uint32_t slot, uint32_t size) { return (size << 12) | (slot & 0xfff); }
inline uint32_t encode_large(uint32_t slot, uint32_t stripes, bool size_in_table, bool truncated) {
  return kImmLarge | (truncated ? kImmTruncated : 0) | (size_in_table ? kImmSizeInTable : 0) |
         (((stripes - 1) & 0x3f) << 12) | (slot & 0xfff);
}
inline uint32_t encode_void(uint32_t slot) { return kImmLarge | kImmVoid | (slot & 0xfff); }
inline Imm decode(uint32_t v) {
  Imm m;
  m.slot = v & 0xfff;
  if (!(v & kImmLarge)) {
    m.size = (v >> 12) & 0x7ffff;
    return m;
  }
  m.small = false;
  m.stripes = ((v >> 12) & 0x3f) + 1;
  m.size_in_table = (v & kImmSizeInTable) != 0;
  m.truncated = (v & kImmTruncated) != 0;
  m.void_slot = (v & kImmVoid) != 0;
  return m;
}

// Eager messages.
inline constexpr uint32_t kEagerSlots = 32;
inline constexpr uint32_t kEagerBytes = 1024;  // largest message sent eagerly
struct EagerHeader {
  uint64_t tag;
  uint64_t msn;
  uint64_t size;
  uint64_t reserved;
};
inline constexpr size_t kEagerSlotBytes = sizeof(EagerHeader) + kEagerBytes;

// How a message of `bytes` is split over `qps` queue pairs: stripes of at least kMinStripe bytes,
// at most one per QP.
inline constexpr size_t kMinStripe = 256 << 10;
inline uint32_t stripe_count(size_t bytes, uint32_t qps) {
  if (qps <= 1 || bytes < 2 * kMinStripe) return 1;
  size_t n = bytes / kMinStripe;
  return static_cast<uint32_t>(n < qps ? n : qps);
}

}  // namespace ringlink::verbs::wire
