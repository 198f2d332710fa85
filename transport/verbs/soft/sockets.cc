// Frames onto and off a QP's loopback streams. Payloads move straight between registered memory
// and the socket where they can (one copy, as the HCA's DMA makes none), and every round is
// bounded by kBudgetPerStream bytes per socket so one busy stream cannot starve the rest.
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "transport/verbs/soft/frame_checks.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {
namespace {

constexpr size_t kRxBuffer = 256 << 10;
constexpr size_t kDirectThreshold = 32 << 10;  // a payload this large goes from the socket straight to memory

// Reads more bytes into the stream's buffer.
Io fill(Stream& s) {
  if (s.begin == s.end) s.begin = s.end = 0;
  if (s.buf.size() - s.end < sizeof(WireHeader)) {
    std::memmove(s.buf.data(), s.buf.data() + s.begin, s.end - s.begin);
    s.end -= s.begin;
    s.begin = 0;
  }
  for (;;) {
    ssize_t n = ::recv(s.fd, s.buf.data() + s.end, s.buf.size() - s.end, MSG_DONTWAIT);
    if (n > 0) {
      s.end += static_cast<size_t>(n);
      return Io::Done;
    }
    if (n == 0) return Io::Closed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::Blocked;
    return Io::Closed;
  }
}

// Payload bytes into the sink, segment by segment; a segment whose region is gone is not written.
void deliver(Context* c, Stream& s, const std::byte* src, size_t n) {
  while (n > 0 && s.seg < s.sink.size()) {
    Segment& seg = s.sink[s.seg];
    size_t take = std::min(n, seg.len - s.seg_off);
    if (!s.sink_broken) {
      if (!segment_alive(c, seg) || !copy_to(seg, s.seg_off, src, take)) s.sink_broken = true;
    }
    src += take;
    n -= take;
    s.seg_off += take;
    if (s.seg_off == seg.len) {
      ++s.seg;
      s.seg_off = 0;
    }
  }
}

}  // namespace

// Writes queued frames until the socket is full or the round's budget is spent.
Io flush_tx(Context* c, Stream& s) {
  size_t budget = kBudgetPerStream;
  while (!s.tx.empty()) {
    iovec iov[64];
    int n = 0;
    for (auto f = s.tx.begin(); f != s.tx.end() && n < 62; ++f) {
      size_t off = f->sent;
      if (off < sizeof(WireHeader)) {
        iov[n++] = {reinterpret_cast<char*>(&f->hdr) + off, sizeof(WireHeader) - off};
        off = 0;
      } else {
        off -= sizeof(WireHeader);
      }
      for (const Segment& seg : f->payload) {
        if (n >= 63) break;
        if (off >= seg.len) {
          off -= seg.len;
          continue;
        }
        iov[n++] = {seg.ptr + off, seg.len - off};
        off = 0;
      }
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t w = ::sendmsg(s.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::Blocked;
      return Io::Closed;
    }
    size_t left = static_cast<size_t>(w);
    while (left > 0) {
      TxFrame& f = s.tx.front();
      size_t frame_left = sizeof(WireHeader) + f.total - f.sent;
      size_t take = std::min(left, frame_left);
      f.sent += take;
      left -= take;
      if (f.sent == sizeof(WireHeader) + f.total) s.tx.pop_front();
    }
    if (static_cast<size_t>(w) >= budget) {
      c->more_work = true;
      return Io::Blocked;
    }
    budget -= static_cast<size_t>(w);
  }
  return Io::Done;
}

// The next frame header, once all of it has arrived. A malformed one ends the stream: nothing
// after it can be framed, as a real HCA drops what it cannot parse.
Io next_header(Stream& s, Direction direction) {
  if (s.buf.empty()) s.buf.resize(kRxBuffer);
  while (s.end - s.begin < sizeof(WireHeader)) {
    Io r = fill(s);
    if (r != Io::Done) return r;
  }
  std::memcpy(&s.hdr, s.buf.data() + s.begin, sizeof(WireHeader));
  if (std::string why = check_frame(s.hdr, direction); !why.empty()) {
    log::warn("soft verbs: dropping a connection that sent a malformed frame: {}", why);
    return Io::Closed;
  }
  s.begin += sizeof(WireHeader);
  s.have_header = true;
  return Io::Done;
}

// Moves the current frame's payload into its sink. Done when all of it has arrived.
Io pump_payload(Context* c, Stream& s, size_t& budget) {
  while (s.payload_left > 0) {
    size_t avail = s.end - s.begin;
    if (avail > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(avail, s.payload_left));
      deliver(c, s, s.buf.data() + s.begin, n);
      s.begin += n;
      s.payload_left -= n;
      continue;
    }
    if (budget == 0) {
      c->more_work = true;
      return Io::Blocked;
    }
    // Large payloads go from the socket straight into host memory.
    if (s.payload_left >= kDirectThreshold && s.seg < s.sink.size() && !s.sink_broken &&
        !s.sink[s.seg].cuda_ctx && segment_alive(c, s.sink[s.seg])) {
      Segment& seg = s.sink[s.seg];
      size_t want = std::min({seg.len - s.seg_off, static_cast<size_t>(s.payload_left), budget});
      ssize_t n = ::recv(s.fd, seg.ptr + s.seg_off, want, MSG_DONTWAIT);
      if (n == 0) return Io::Closed;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::Blocked;
        return Io::Closed;
      }
      s.seg_off += static_cast<size_t>(n);
      s.payload_left -= static_cast<uint64_t>(n);
      budget -= std::min(budget, static_cast<size_t>(n));
      if (s.seg_off == seg.len) {
        ++s.seg;
        s.seg_off = 0;
      }
      continue;
    }
    Io r = fill(s);
    if (r != Io::Done) return r;
    budget -= std::min(budget, s.end - s.begin);
  }
  return Io::Done;
}

void set_sink(Stream& s, std::vector<Segment> sink, uint64_t length) {
  s.sink = std::move(sink);
  s.seg = s.seg_off = 0;
  s.payload_left = length;
  s.sink_broken = false;
}

TxFrame& queue_frame(Stream& s, WireOp op, uint64_t psn) {
  TxFrame& f = s.tx.emplace_back();
  f.hdr.op = static_cast<uint8_t>(op);
  f.hdr.psn = psn;
  return f;
}

}  // namespace ringlink::verbs::soft
