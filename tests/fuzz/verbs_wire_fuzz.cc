// libFuzzer target for the verbs wire decoders (transport/verbs/wire_checks.h): a CTS entry, an
// immediate with the size-table word it may point at, and an eager message, checked against a
// link state (FIFO depth, data QPs, eager messages sent, bytes posted) the input also chooses.
// Whatever the bytes, the checks must not crash, and what they accept must keep the promises
// the link relies on: a slot inside the FIFO, a delivered size within the posted receive, an
// eager payload exactly as long as its header says.
//
// Input: depth (u16) | QPs (u8) | eager sent (u64) | posted (u64) | table word (u64) |
//        CTS entry (64 bytes) | immediate (u32) | eager message (the rest).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_bytes.h"
#include "transport/verbs/wire.h"
#include "transport/verbs/wire_checks.h"

using namespace ringlink::verbs::wire;
using ringlink::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ringlink::fuzz::Bytes in(data, size);
  const uint32_t depth = 1 + in.take<uint16_t>() % 4096;
  const uint32_t qps = 1 + in.take<uint8_t>() % 16;
  const uint64_t eager_sent = in.take<uint64_t>();
  const uint64_t posted = in.take<uint64_t>() % (kMaxRemoteBytes + 1);
  const uint64_t table_word = in.take<uint64_t>();
  const CtsEntry cts = in.take<CtsEntry>();
  const uint32_t imm = in.take<uint32_t>();

  // Every sequence number the reader could hand over, including those of later laps.
  const uint64_t seq = cts.seq_head ? cts.seq_head : 1;
  if (check_cts(cts, seq, depth, eager_sent).empty()) {
    require(cts.slot < depth);
    require(cts.slot == (seq - 1) % depth);
    require(cts.size <= kMaxRemoteBytes && cts.addr + cts.size >= cts.addr);
    require(cts.eager_released <= eager_sent);
  }

  if (check_imm(imm, depth, qps).empty()) {
    const Imm m = decode(imm);
    require(m.slot < depth);
    require(m.stripes >= 1 && m.stripes <= qps);
    if (!m.void_slot) {
      const Arrival a = arrival(m, posted, qps, table_word);
      if (a.kind == Arrival::Kind::Delivered) require(a.size <= posted);
      if (a.kind == Arrival::Kind::TooLong) require(m.truncated && a.size > posted);
      if (a.kind == Arrival::Kind::Invalid) require(!a.why.empty());
    }
  }

  const auto message = in.rest().first(std::min(in.left(), kEagerSlotBytes + 8));
  EagerHeader hdr{};
  if (check_eager(message, hdr).empty()) {
    require(message.size() >= sizeof hdr && message.size() <= kEagerSlotBytes);
    require(hdr.size == message.size() - sizeof hdr && hdr.size <= kEagerBytes);
  }
  require(check_credits(eager_sent, eager_sent).empty());
  return 0;
}
