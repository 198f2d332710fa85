// libFuzzer target for the software verbs' frame parser (transport/verbs/soft/frame_checks.h):
// the input is what a peer sends down an accepted socket, a hello and then frames, framed as the
// service thread frames them (a header, then the payload its length announces). Whatever the
// bytes, the checks must not crash; a frame they accept must be one the service thread can act
// on: an op of that direction and a length within one message.
//
// Input: direction (u8: bit 0 = answers) | hello (40 bytes) | frames.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tests/fuzz/fuzz_bytes.h"
#include "transport/verbs/soft/frame_checks.h"

using namespace ringlink::verbs::soft;
using ringlink::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ringlink::fuzz::Bytes in(data, size);
  const Direction direction = in.take<uint8_t>() & 1 ? Direction::Answers : Direction::Requests;
  auto rest = in.rest();
  Hello hello;
  const auto first = rest.first(std::min(rest.size(), sizeof(WireHeader)));
  if (parse_hello(first, hello).empty()) {
    require(first.size() == sizeof(WireHeader));
    require(hello.qpn >= 1 && hello.qpn <= 0xffffff && hello.dest_qpn >= 1 && hello.dest_qpn <= 0xffffff);
  } else {
    return 0;  // the socket is dropped: nothing after a bad hello is read
  }
  rest = rest.subspan(first.size());
  while (rest.size() >= sizeof(WireHeader)) {
    WireHeader h;
    std::memcpy(&h, rest.data(), sizeof h);
    rest = rest.subspan(sizeof h);
    if (!check_frame(h, direction).empty()) return 0;  // the stream ends here
    const WireOp op = op_of(h);
    require(direction == Direction::Requests ? op >= WireOp::Write && op <= WireOp::ReadReq
                                             : op >= WireOp::Ack && op <= WireOp::ReadResp);
    require(h.psn != 0 && h.length <= kMaxMessage);
    const bool payload = op == WireOp::Write || op == WireOp::WriteImm || op == WireOp::Send ||
                         op == WireOp::SendImm || op == WireOp::ReadResp;
    if (payload) rest = rest.subspan(std::min<uint64_t>(h.length, rest.size()));
  }
  return 0;
}
