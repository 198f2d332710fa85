// What a peer's soft QP sends over its stream, checked before the service thread acts on it:
// the hello that binds an accepted socket to a QP, and every frame header after it. A header's
// length sizes what is read next; the op decides where the bytes go. Neither is taken unchecked.
//
// Pure functions over bytes and values, so tests/fuzz/soft_frame_fuzz.cc calls them as the
// service thread does. They return an empty string, or what is wrong in words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "transport/verbs/soft/wire_format.h"

namespace ringlink::verbs::soft {

// An accepted socket has this long to deliver its whole hello, and this many may wait at once.
inline constexpr int kHelloDeadlineMs = 5000;
inline constexpr size_t kMaxPendingSockets = 1024;

struct Hello {
  uint16_t lid = 0;       // the requester's context
  uint32_t qpn = 0;       // the requester's QP
  uint32_t dest_qpn = 0;  // the QP it asks for here
};
// The first frame of an accepted socket: exactly one header, op Hello, every field it does not
// use zero, a 16-bit LID and 24-bit QP numbers.
std::string parse_hello(std::span<const std::byte> bytes, Hello& out);

// Which way a frame travels: the responder reads requests, the requester answers.
enum class Direction { Requests, Answers };
// A frame header as it arrived: an op that belongs on that stream, a nonzero PSN, no reserved
// bits, a length within kMaxMessage (wire_format.h) where the op has a payload or asks for
// bytes and zero where it has neither, a request's RNR retry count at most 7, and a Nak's
// status an error status.
std::string check_frame(const WireHeader& h, Direction direction);

}  // namespace ringlink::verbs::soft
