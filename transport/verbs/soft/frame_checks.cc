#include "transport/verbs/soft/frame_checks.h"

#include <infiniband/verbs.h>

#include <cstring>

#include <fmt/format.h>

namespace ringlink::verbs::soft {
namespace {

constexpr uint64_t kMaxQpn = 0xffffff;

bool carries_payload(WireOp op) {
  return op == WireOp::Write || op == WireOp::WriteImm || op == WireOp::Send || op == WireOp::SendImm ||
         op == WireOp::ReadResp;
}

}  // namespace

std::string parse_hello(std::span<const std::byte> bytes, Hello& out) {
  if (bytes.size() != sizeof(WireHeader))
    return fmt::format("a hello of {} bytes (a hello is {})", bytes.size(), sizeof(WireHeader));
  WireHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (op_of(h) != WireOp::Hello) return fmt::format("the first frame has op {}, not hello", h.op);
  if (h.status || h.reserved || h.imm || h.psn || h.vendor) return "a hello with fields it does not use set";
  if (h.addr > 0xffff) return fmt::format("a hello from LID {:#x}, wider than 16 bits", h.addr);
  if (h.rkey == 0 || h.rkey > kMaxQpn || h.length == 0 || h.length > kMaxQpn)
    return fmt::format("a hello from QP {:#x} for QP {:#x}", h.rkey, h.length);
  out.lid = static_cast<uint16_t>(h.addr);
  out.qpn = h.rkey;
  out.dest_qpn = static_cast<uint32_t>(h.length);
  return {};
}

std::string check_frame(const WireHeader& h, Direction direction) {
  const WireOp op = op_of(h);
  const bool request = op == WireOp::Write || op == WireOp::WriteImm || op == WireOp::Send ||
                       op == WireOp::SendImm || op == WireOp::ReadReq;
  const bool answer = op == WireOp::Ack || op == WireOp::Nak || op == WireOp::ReadResp;
  if (direction == Direction::Requests ? !request : !answer)
    return fmt::format("op {} among the {}", h.op, direction == Direction::Requests ? "requests" : "answers");
  if (h.psn == 0) return "a frame with PSN 0 (PSNs start at 1)";
  if (h.reserved) return "a frame with its reserved field set";
  const bool sized = carries_payload(op) || op == WireOp::ReadReq;
  if (sized && h.length > kMaxMessage)
    return fmt::format("a frame of {} bytes (a message is at most {})", h.length, kMaxMessage);
  if (!sized && h.length) return fmt::format("an {} frame with length {}", op == WireOp::Ack ? "ack" : "nak", h.length);
  if (request && h.status > 7) return fmt::format("a request with RNR retry count {}", h.status);
  if (op == WireOp::Nak && (h.status == IBV_WC_SUCCESS || h.status > IBV_WC_GENERAL_ERR))
    return fmt::format("a nak with completion status {}", h.status);
  return {};
}

}  // namespace ringlink::verbs::soft
