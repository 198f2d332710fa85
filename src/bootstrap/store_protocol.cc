#include "bootstrap/store_protocol.h"

#include <algorithm>
#include <cstddef>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ringlink::store_protocol {
namespace {

Event event(uint8_t v) {
  switch (static_cast<Event>(v)) {
    case Event::Lost:
    case Event::Failed:
    case Event::Heartbeat: return static_cast<Event>(v);
  }
  throw wire::FormatError(fmt::format("unknown event {}", v));
}

Channel channel(uint8_t v) {
  switch (static_cast<Channel>(v)) {
    case Channel::Request:
    case Channel::Watch: return static_cast<Channel>(v);
  }
  throw wire::FormatError(fmt::format("unknown channel {}", v));
}

}  // namespace

milliseconds heartbeat_period(milliseconds liveness_timeout) {
  return std::clamp(liveness_timeout / 10, milliseconds(10), milliseconds(1000));
}

std::string list_ranks(const std::vector<int>& ranks) {
  const size_t shown = std::min<size_t>(ranks.size(), 8);
  std::string s = fmt::format("{}", fmt::join(ranks.begin(), ranks.begin() + static_cast<std::ptrdiff_t>(shown), ", "));
  if (ranks.size() > shown) s += fmt::format(" and {} more", ranks.size() - shown);
  return s;
}

milliseconds silence_limit(milliseconds liveness_timeout, milliseconds other_side_heartbeat) {
  return std::max(liveness_timeout, 4 * other_side_heartbeat);
}

ErrorKind read_error_kind(wire::Reader& r) {
  uint8_t v = r.u8();
  switch (static_cast<ErrorKind>(v)) {
    case ErrorKind::Timeout:
    case ErrorKind::PeerLost:
    case ErrorKind::Mismatch:
    case ErrorKind::InvalidArgument:
    case ErrorKind::Transport: return static_cast<ErrorKind>(v);
  }
  throw wire::FormatError(fmt::format("unknown error kind {}", v));
}

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
  f.kind = read_error_kind(r);
  f.culprit = r.i32();
  f.message = r.str();
  return f;
}

std::string encode(const Hello& h) {
  return wire::Writer()
      .u8(static_cast<uint8_t>(Op::Hello))
      .u32(h.version)
      .i32(h.rank)
      .i32(h.world_size)
      .u32(h.epoch)
      .u8(static_cast<uint8_t>(h.channel))
      .u32(h.heartbeat_ms)
      .fixed(h.nonce)
      .take();
}

Hello read_hello(wire::Reader& r) {
  Hello h;
  h.version = r.u32();
  if (h.version != kVersion)
    throw wire::FormatError(fmt::format("store protocol version {} (this build speaks {})", h.version, kVersion));
  h.rank = r.i32();
  h.world_size = r.i32();
  h.epoch = r.u32();
  h.channel = channel(r.u8());
  h.heartbeat_ms = r.u32();
  h.nonce = r.fixed(kNonceBytes);
  r.expect_end();
  return h;
}

std::string encode(const Pushed& pushed) {
  wire::Writer w;
  w.u8(static_cast<uint8_t>(pushed.event));
  if (pushed.event != Event::Heartbeat)
    w.u8(static_cast<uint8_t>(pushed.kind)).i32(pushed.rank).str(pushed.message);
  return w.take();
}

Pushed read_pushed(wire::Reader& r) {
  Pushed p;
  p.event = event(r.u8());
  if (p.event != Event::Heartbeat) {
    p.kind = read_error_kind(r);
    p.rank = r.i32();
    p.message = r.str();
  }
  r.expect_end();
  return p;
}

}  // namespace ringlink::store_protocol
