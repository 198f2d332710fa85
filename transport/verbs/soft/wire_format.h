// What two soft QPs say to each other over their loopback TCP streams. A QP's requester stream
// (the socket it connected at RTR) carries its requests one way and the responder's answers the
// other, as an RC connection's packets and ACKs would.
#pragma once

#include <cstdint>

namespace ringlink::verbs::soft {

// The most bytes one message may have (ibv_port_attr::max_msg_sz): no frame carries or asks
// for more.
inline constexpr uint64_t kMaxMessage = uint64_t{1} << 31;

enum class WireOp : uint8_t { Hello = 1, Write, WriteImm, Send, SendImm, ReadReq, Ack, Nak, ReadResp };

// Every message starts with this header; Write, WriteImm, Send, SendImm and ReadResp carry
// `length` payload bytes after it.
struct WireHeader {
  uint8_t op = 0;
  uint8_t status = 0;  // Nak: the ibv_wc_status the requester reports; requests: the requester's rnr_retry
  uint16_t reserved = 0;
  uint32_t imm = 0;     // WriteImm / SendImm: the immediate as posted
  uint64_t psn = 0;     // the request's sequence number on its QP (from 1); answers name it
  uint64_t addr = 0;    // Write / ReadReq: target address; Hello: the requester's LID
  uint64_t length = 0;  // payload bytes (Write, Send, ReadResp) or bytes asked (ReadReq); Hello: target QPN
  uint32_t rkey = 0;    // Write / ReadReq: the key; Hello: the requester's QPN
  uint32_t vendor = 0;  // Nak: vendor error
};
static_assert(sizeof(WireHeader) == 40);

inline WireOp op_of(const WireHeader& h) { return static_cast<WireOp>(h.op); }

}  // namespace ringlink::verbs::soft
