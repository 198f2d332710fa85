#include "bootstrap/store_protocol.h"

#include <fmt/format.h>

namespace ringlink::store_protocol {
namespace {

ErrorKind error_kind(uint8_t v) {
  switch (static_cast<ErrorKind>(v)) {
    case ErrorKind::Timeout:
    case ErrorKind::PeerLost:
    case ErrorKind::Mismatch:
    case ErrorKind::InvalidArgument:
    case ErrorKind::Transport: return static_cast<ErrorKind>(v);
  }
  throw wire::FormatError(fmt::format("unknown error kind {}", v));
}

Event event(uint8_t v) {
  switch (static_cast<Event>(v)) {
    case Event::Lost:
    case Event::Failed: return static_cast<Event>(v);
  }
  throw wire::FormatError(fmt::format("unknown event {}", v));
}

}  // namespace

wire::Writer reply(Status status) {
  wire::Writer w;
  w.u8(static_cast<uint8_t>(status));
  return w;
}

std::string failed_reply(const Failure& failure) {
  return reply(Status::Failed)
      .u8(static_cast<uint8_t>(failure.kind))
      .i32(failure.culprit)
      .str(failure.message)
      .take();
}

Failure read_failure(wire::Reader& r) {
  Failure f;
  f.kind = error_kind(r.u8());
  f.culprit = r.i32();
  f.message = r.str();
  return f;
}

std::string encode(const Pushed& pushed) {
  return wire::Writer().u8(static_cast<uint8_t>(pushed.event)).i32(pushed.rank).str(pushed.message).take();
}

Pushed read_pushed(wire::Reader& r) {
  Pushed p;
  p.event = event(r.u8());
  p.rank = r.i32();
  p.message = r.str();
  return p;
}

}  // namespace ringlink::store_protocol
