// Work request ids: what a completion belongs to, packed into ibv_wc::wr_id.
//   [63:60] kind  [59:36] link id  [35:32] QP index  [31:0] serial (send #, CTS sequence, ...)
#pragma once

#include <cstdint>

namespace ringlink::verbs {

enum class WrKind : uint64_t {
  // On a link's data QPs:
  Recv = 1, Cts = 2, Data = 3, SizeWrite = 4, InlineData = 6, Void = 7, Drain = 11,
  // On the transport's GPUDirect flush QP:
  Flush = 5,
  // On a link's control QP:
  EagerRecv = 8, EagerSend = 9, Credit = 10, DrainControl = 12,
};

inline bool on_control_qp(WrKind k) {
  return k == WrKind::EagerRecv || k == WrKind::EagerSend || k == WrKind::Credit || k == WrKind::DrainControl;
}

inline uint64_t make_wr_id(WrKind k, uint32_t link, uint32_t qp, uint32_t serial) {
  return (static_cast<uint64_t>(k) << 60) | (static_cast<uint64_t>(link & 0xffffff) << 36) |
         (static_cast<uint64_t>(qp & 0xf) << 32) | serial;
}

struct WrId {
  WrKind kind;
  uint32_t link, qp, serial;
};

inline WrId parse_wr_id(uint64_t v) {
  return {static_cast<WrKind>(v >> 60), static_cast<uint32_t>((v >> 36) & 0xffffff),
          static_cast<uint32_t>((v >> 32) & 0xf), static_cast<uint32_t>(v)};
}

}  // namespace ringlink::verbs
