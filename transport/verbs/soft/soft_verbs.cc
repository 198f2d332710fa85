// Software verbs (see soft_verbs.h). Layout of this file:
//   wire format and objects; fault injection; the service thread (the "HCA"): requester side
//   (posted sends onto the wire, responses back into completions), responder side (incoming
//   requests checked and applied to memory); then the verbs entry points and the table.
//
// Locking: a context's mutex guards its objects and queues. The service thread holds it for a
// whole round of work (bounded by kBudgetPerStream bytes per socket) and drops it only while it
// sleeps in poll(); so an application thread that deregisters memory or destroys a QP knows
// that no "DMA" is in progress once it holds the lock. Each CQ has its own mutex so polling
// never waits for a round.
#include "transport/verbs/soft/soft_verbs.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/cuda_driver.h"
#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs::soft {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxInline = 512;
constexpr uint32_t kMaxQpWr = 16384;
constexpr uint32_t kMaxSge = 16;
constexpr int kMaxCqe = 1 << 22;
constexpr uint64_t kMaxMrSize = uint64_t{1} << 40;
constexpr uint64_t kMaxMessage = uint64_t{1} << 31;
constexpr size_t kRxBuffer = 256 << 10;
constexpr size_t kDirectThreshold = 32 << 10;  // a payload this large goes from the socket straight to memory
constexpr size_t kBudgetPerStream = 2 << 20;   // bytes per socket per round, so rounds stay short
constexpr auto kHelloPatience = std::chrono::seconds(30);

// ---- wire format ------------------------------------------------------------------------------

enum class Op : uint8_t { Hello = 1, Write, WriteImm, Send, SendImm, ReadReq, Ack, Nak, ReadResp };

// Every message between two soft QPs starts with this header; Write, Send and ReadResp carry
// `length` payload bytes after it. A QP's requester stream (the socket it connected) carries its
// requests one way and the responder's answers the other.
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

// ---- objects --------------------------------------------------------------------------------

struct Context;
struct Pd;
struct Mr;
struct Cq;
struct Qp;

// Each verbs struct is the first member of a standard-layout handle that points back to the
// object, so a pointer handed to the application converts back safely.
struct ContextHandle {
  ibv_context verbs;
  Context* self;
};
struct PdHandle {
  ibv_pd verbs;
  Pd* self;
};
struct MrHandle {
  ibv_mr verbs;
  Mr* self;
};
struct CqHandle {
  ibv_cq verbs;
  Cq* self;
};
struct QpHandle {
  ibv_qp verbs;
  Qp* self;
};

struct Pd {
  PdHandle h{};
  Context* ctx = nullptr;
  int users = 0;  // MRs and QPs
};

struct Mr {
  MrHandle h{};
  Pd* pd = nullptr;
  uintptr_t addr = 0;
  uint64_t length = 0;
  int access = 0;
  bool gpu = false;           // CUDA memory registered through dma-buf: reached with driver copies
  cuda::CUcontext cuda_ctx = nullptr;
  uint32_t key = 0;
};

struct Cq {
  CqHandle h{};
  Context* ctx = nullptr;
  std::mutex mu;
  std::deque<ibv_wc> entries;
  size_t capacity = 0;
  bool overflowed = false;
  int users = 0;
};

// A piece of memory a payload comes from or goes to.
struct Segment {
  std::byte* ptr = nullptr;
  size_t len = 0;
  uint32_t key = 0;            // the region it lies in (0: memory the soft verbs own)
  cuda::CUcontext cuda_ctx = nullptr;  // non-null: device memory
};

struct SendWr {
  uint64_t wr_id = 0;
  ibv_wr_opcode opcode = IBV_WR_SEND;
  bool signaled = false;
  uint32_t imm = 0;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  std::vector<ibv_sge> sge;
  std::vector<std::byte> inline_data;
  bool inlined = false;
  uint64_t length = 0;
  uint64_t psn = 0;
  std::vector<Segment> local;       // resolved local memory (RDMA READ: where the answer goes)
  ibv_wc_status local_error = IBV_WC_SUCCESS;  // failed its local checks: completes in turn
};

struct RecvWr {
  uint64_t wr_id = 0;
  std::vector<ibv_sge> sge;
};

struct TxFrame {
  WireHeader hdr;
  std::vector<Segment> payload;
  std::vector<std::byte> owned;  // payload bytes copied at post time (inline, device memory)
  size_t total = 0;              // payload bytes
  size_t sent = 0;               // header + payload bytes written so far
};

struct Stream {
  int fd = -1;
  bool readable = false;
  std::vector<std::byte> buf;
  size_t begin = 0, end = 0;
  // The frame being received.
  bool have_header = false;
  WireHeader hdr;
  std::vector<Segment> sink;  // empty: the payload is discarded
  size_t seg = 0, seg_off = 0;
  uint64_t payload_left = 0;
  bool sink_broken = false;  // a region vanished under the payload
  bool started = false;      // the current request has been checked (and its sink set)
  bool applies = false;      // ... and accepted: its payload lands in memory
  bool parked = false;       // receiver not ready: waiting for a posted receive
  Clock::time_point parked_since{};
  std::deque<TxFrame> tx;

  void reset() {
    if (fd >= 0) ::close(fd);
    *this = Stream{};
  }
};

struct Qp {
  QpHandle h{};
  Context* ctx = nullptr;
  Pd* pd = nullptr;
  Cq* scq = nullptr;
  Cq* rcq = nullptr;
  ibv_qp_cap cap{};
  bool sig_all = false;
  ibv_qp_state state = IBV_QPS_RESET;
  // Attributes set through modify_qp.
  uint16_t pkey_index = 0;
  uint8_t port = 0;
  int access = 0;
  ibv_mtu path_mtu = IBV_MTU_1024;
  uint32_t dest_qpn = 0;
  uint16_t dlid = 0;
  uint32_t rq_psn = 0, sq_psn = 0;
  uint8_t timeout = 0, retry_cnt = 0, rnr_retry = 0, min_rnr_timer = 0;
  uint8_t max_rd_atomic = 0, max_dest_rd_atomic = 0;
  ibv_ah_attr ah{};
  // Work.
  std::deque<SendWr> sq;        // posted, not yet on the wire
  std::deque<SendWr> inflight;  // on the wire, waiting for the responder (in psn order)
  std::deque<RecvWr> rq;
  uint64_t next_psn = 1;
  bool sq_blocked = false;  // a request failed its local checks: nothing after it goes out
  bool peer_gone = false;
  Stream out;  // requester stream: our requests out, the responder's answers in
  Stream in;   // responder stream: the peer's requests in, our answers out
  // Responder.
  bool ack_pending = false;
  uint64_t ack_psn = 0;
  bool in_discard = false;  // after an error: incoming requests are dropped
};

struct PendingSocket {
  int fd = -1;
  std::byte hello[sizeof(WireHeader)];
  size_t got = 0;
  Clock::time_point since{};
};

struct Context {
  ContextHandle h{};
  std::mutex mu;
  int listen_fd = -1;
  uint16_t lid = 0;
  int wake_fd = -1;
  std::atomic<bool> wake_pending{false};
  int async_fd = -1;
  std::deque<ibv_async_event> async_events;
  std::thread service;
  std::atomic<bool> stop{false};
  bool more_work = false;  // a round left work behind: do not sleep
  std::unordered_map<uint32_t, Mr*> mrs;  // by key
  std::unordered_map<uint32_t, Qp*> qps;  // by QPN
  std::vector<PendingSocket> pending;     // accepted, hello not yet read or target QP not ready
  uint32_t next_key = 0;
  uint32_t next_qpn = 0x100;
  int users = 0;  // PDs and CQs
  Fault fault;
  uint64_t sends_posted = 0, writes_posted = 0;
  bool drop_now = false;
  bool port_down = false;
};

Context* of(ibv_context* c) { return reinterpret_cast<ContextHandle*>(c)->self; }
Pd* of(ibv_pd* p) { return reinterpret_cast<PdHandle*>(p)->self; }
Mr* of(ibv_mr* m) { return reinterpret_cast<MrHandle*>(m)->self; }
Cq* of(ibv_cq* c) { return reinterpret_cast<CqHandle*>(c)->self; }
Qp* of(ibv_qp* q) { return reinterpret_cast<QpHandle*>(q)->self; }

ibv_device* soft_device() {
  static ibv_device device = [] {
    ibv_device d{};
    d.node_type = IBV_NODE_CA;
    d.transport_type = IBV_TRANSPORT_IB;
    std::snprintf(d.name, sizeof d.name, "soft");
    std::snprintf(d.dev_name, sizeof d.dev_name, "soft");
    return d;
  }();
  return &device;
}

void wake(Context* c) {
  if (c->wake_pending.exchange(true)) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(c->wake_fd, &one, sizeof one);
}

void push_async(Context* c, ibv_async_event ev) {
  c->async_events.push_back(ev);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(c->async_fd, &one, sizeof one);
}

void push_cqe(Cq* cq, const ibv_wc& wc) {
  std::lock_guard lk(cq->mu);
  if (cq->entries.size() >= cq->capacity) {
    // A real CQ overruns into an asynchronous CQ error; the entry is lost.
    if (!cq->overflowed) {
      cq->overflowed = true;
      ibv_async_event ev{};
      ev.event_type = IBV_EVENT_CQ_ERR;
      ev.element.cq = &cq->h.verbs;
      push_async(cq->ctx, ev);
    }
    return;
  }
  cq->entries.push_back(wc);
}

ibv_wc_opcode wc_opcode(ibv_wr_opcode op) {
  switch (op) {
    case IBV_WR_RDMA_WRITE:
    case IBV_WR_RDMA_WRITE_WITH_IMM: return IBV_WC_RDMA_WRITE;
    case IBV_WR_RDMA_READ: return IBV_WC_RDMA_READ;
    default: return IBV_WC_SEND;
  }
}

void complete_send(Qp* qp, const SendWr& wr, ibv_wc_status status, uint32_t vendor) {
  if (status == IBV_WC_SUCCESS && !wr.signaled) return;  // errors always complete
  ibv_wc wc{};
  wc.wr_id = wr.wr_id;
  wc.status = status;
  wc.opcode = wc_opcode(wr.opcode);
  wc.vendor_err = vendor;
  wc.byte_len = wr.opcode == IBV_WR_RDMA_READ ? static_cast<uint32_t>(wr.length) : 0;
  wc.qp_num = qp->h.verbs.qp_num;
  push_cqe(qp->scq, wc);
}

void complete_recv(Qp* qp, const RecvWr& wr, ibv_wc_status status, ibv_wc_opcode opcode, uint32_t bytes,
                   const uint32_t* imm, uint32_t vendor = 0) {
  ibv_wc wc{};
  wc.wr_id = wr.wr_id;
  wc.status = status;
  wc.opcode = opcode;
  wc.vendor_err = vendor;
  wc.byte_len = bytes;
  wc.qp_num = qp->h.verbs.qp_num;
  wc.src_qp = qp->dest_qpn;
  if (imm) {
    wc.wc_flags = IBV_WC_WITH_IMM;
    wc.imm_data = *imm;
  }
  push_cqe(qp->rcq, wc);
}

void set_state(Qp* qp, ibv_qp_state s) {
  qp->state = s;
  qp->h.verbs.state = s;
}

// The QP enters the error state: everything outstanding completes with a flush error.
void qp_to_error(Qp* qp) {
  if (qp->state == IBV_QPS_ERR) return;
  set_state(qp, IBV_QPS_ERR);
  for (auto& wr : qp->inflight) complete_send(qp, wr, IBV_WC_WR_FLUSH_ERR, 0);
  qp->inflight.clear();
  for (auto& wr : qp->sq) complete_send(qp, wr, IBV_WC_WR_FLUSH_ERR, 0);
  qp->sq.clear();
  for (auto& wr : qp->rq) complete_recv(qp, wr, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0, nullptr);
  qp->rq.clear();
  qp->out.tx.clear();
  qp->in_discard = true;
  qp->ack_pending = false;
  qp->in.parked = false;
}

// The oldest outstanding send fails with `status`; the rest are flushed.
void fail_requester(Qp* qp, ibv_wc_status status, uint32_t vendor) {
  if (!qp->inflight.empty()) {
    complete_send(qp, qp->inflight.front(), status, vendor);
    qp->inflight.pop_front();
  } else if (!qp->sq.empty()) {
    complete_send(qp, qp->sq.front(), status, vendor);
    qp->sq.pop_front();
  }
  qp_to_error(qp);
}

// Requests the responder answered (or that failed locally) leave the front in order.
void complete_through(Qp* qp, uint64_t psn) {
  while (!qp->inflight.empty() && qp->inflight.front().psn <= psn) {
    SendWr& wr = qp->inflight.front();
    if (wr.local_error != IBV_WC_SUCCESS) break;
    complete_send(qp, wr, IBV_WC_SUCCESS, 0);
    qp->inflight.pop_front();
  }
  if (!qp->inflight.empty() && qp->inflight.front().local_error != IBV_WC_SUCCESS) {
    // Everything before it has completed: its own error is next.
    fail_requester(qp, qp->inflight.front().local_error, kVendorLocalProtection);
  }
}

void peer_gone(Qp* qp) {
  qp->out.reset();
  qp->peer_gone = true;
  if (qp->state == IBV_QPS_RTS && (!qp->inflight.empty() || !qp->sq.empty()))
    fail_requester(qp, IBV_WC_RETRY_EXC_ERR, kVendorPeerGone);
}

// Looks a local scatter/gather list up in the QP's protection domain.
bool resolve_local(Context* c, Qp* qp, const std::vector<ibv_sge>& sges, bool need_write, std::vector<Segment>& out) {
  out.clear();
  for (const ibv_sge& s : sges) {
    if (s.length == 0) continue;
    auto it = c->mrs.find(s.lkey);
    if (it == c->mrs.end()) return false;
    Mr* mr = it->second;
    if (mr->pd != qp->pd) return false;
    if (need_write && !(mr->access & IBV_ACCESS_LOCAL_WRITE)) return false;
    if (s.addr < mr->addr || s.addr + s.length > mr->addr + mr->length) return false;
    out.push_back({reinterpret_cast<std::byte*>(s.addr), s.length, mr->key, mr->gpu ? mr->cuda_ctx : nullptr});
  }
  return true;
}

// Checks a remote access against the target region, as the responder's HCA would.
uint32_t check_remote(Context* c, Qp* qp, uint64_t addr, uint64_t length, uint32_t rkey, int right, Segment& seg) {
  auto it = c->mrs.find(rkey);
  if (it == c->mrs.end() || it->second->pd != qp->pd) return kVendorBadKey;
  Mr* mr = it->second;
  if (!(mr->access & right) || !(qp->access & right)) return kVendorAccessDenied;
  if (addr < mr->addr || addr + length > mr->addr + mr->length || addr + length < addr) return kVendorOutOfBounds;
  seg = {reinterpret_cast<std::byte*>(addr), static_cast<size_t>(length), mr->key, mr->gpu ? mr->cuda_ctx : nullptr};
  return kVendorNone;
}

bool copy_to(const Segment& dst, size_t off, const std::byte* src, size_t n) {
  if (!dst.cuda_ctx) {
    std::memcpy(dst.ptr + off, src, n);
    return true;
  }
  const cuda::CudaDriver* cuda = cuda::cuda_driver();
  if (!cuda || cuda->ctx_set_current(dst.cuda_ctx) != cuda::kCudaSuccess) return false;
  return cuda->memcpy_htod(reinterpret_cast<cuda::CUdeviceptr>(dst.ptr + off), src, n) == cuda::kCudaSuccess;
}

// Copies device segments into `owned` so the socket can send them (host segments go as they are).
bool stage_device_payload(TxFrame& f) {
  bool any_device = std::any_of(f.payload.begin(), f.payload.end(), [](const Segment& s) { return s.cuda_ctx; });
  if (!any_device) return true;
  const cuda::CudaDriver* cuda = cuda::cuda_driver();
  if (!cuda) return false;
  f.owned.resize(f.total);
  size_t off = 0;
  for (const Segment& s : f.payload) {
    if (s.cuda_ctx) {
      if (cuda->ctx_set_current(s.cuda_ctx) != cuda::kCudaSuccess ||
          cuda->memcpy_dtoh(f.owned.data() + off, reinterpret_cast<cuda::CUdeviceptr>(s.ptr), s.len) != cuda::kCudaSuccess)
        return false;
    } else {
      std::memcpy(f.owned.data() + off, s.ptr, s.len);
    }
    off += s.len;
  }
  f.payload.assign(1, Segment{f.owned.data(), f.total, 0, nullptr});
  return true;
}

// ---- socket I/O ------------------------------------------------------------------------------

enum class Io { Done, Blocked, Closed };

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

// The next frame header, once all of it has arrived.
Io next_header(Stream& s) {
  if (s.buf.empty()) s.buf.resize(kRxBuffer);
  while (s.end - s.begin < sizeof(WireHeader)) {
    Io r = fill(s);
    if (r != Io::Done) return r;
  }
  std::memcpy(&s.hdr, s.buf.data() + s.begin, sizeof(WireHeader));
  s.begin += sizeof(WireHeader);
  s.have_header = true;
  return Io::Done;
}

bool segment_alive(Context* c, const Segment& seg) { return seg.key == 0 || c->mrs.count(seg.key) > 0; }

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
    // Large payloads go from the socket straight into host memory (one copy, as DMA would).
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

TxFrame& queue_frame(Stream& s, Op op, uint64_t psn) {
  TxFrame& f = s.tx.emplace_back();
  f.hdr.op = static_cast<uint8_t>(op);
  f.hdr.psn = psn;
  return f;
}

void flush_ack(Qp* qp) {
  if (!qp->ack_pending || qp->in.fd < 0) return;
  queue_frame(qp->in, Op::Ack, qp->ack_psn);
  qp->ack_pending = false;
}

// ---- requester side -------------------------------------------------------------------------

// Moves posted work requests onto the requester stream.
void start_sends(Context* c, Qp* qp) {
  while (!qp->sq.empty() && !qp->sq_blocked) {
    if (qp->peer_gone || qp->out.fd < 0) {
      fail_requester(qp, IBV_WC_RETRY_EXC_ERR, kVendorPeerGone);
      return;
    }
    SendWr wr = std::move(qp->sq.front());
    qp->sq.pop_front();
    wr.psn = qp->next_psn++;
    std::vector<Segment> local;
    bool is_read = wr.opcode == IBV_WR_RDMA_READ;
    if (!wr.inlined && !resolve_local(c, qp, wr.sge, is_read, local)) {
      // Completes with IBV_WC_LOC_PROT_ERR once everything before it has.
      wr.local_error = IBV_WC_LOC_PROT_ERR;
      qp->sq_blocked = true;
      qp->inflight.push_back(std::move(wr));
      if (qp->inflight.size() == 1) complete_through(qp, qp->inflight.front().psn - 1);
      return;
    }
    TxFrame& f = queue_frame(qp->out, Op::Write, wr.psn);
    switch (wr.opcode) {
      case IBV_WR_RDMA_WRITE: f.hdr.op = static_cast<uint8_t>(Op::Write); break;
      case IBV_WR_RDMA_WRITE_WITH_IMM: f.hdr.op = static_cast<uint8_t>(Op::WriteImm); break;
      case IBV_WR_SEND: f.hdr.op = static_cast<uint8_t>(Op::Send); break;
      case IBV_WR_SEND_WITH_IMM: f.hdr.op = static_cast<uint8_t>(Op::SendImm); break;
      case IBV_WR_RDMA_READ: f.hdr.op = static_cast<uint8_t>(Op::ReadReq); break;
      default: break;
    }
    f.hdr.imm = wr.imm;
    f.hdr.status = qp->rnr_retry;
    f.hdr.addr = wr.remote_addr;
    f.hdr.rkey = wr.rkey;
    f.hdr.length = wr.length;
    if (is_read) {
      wr.local = std::move(local);
    } else if (wr.inlined) {
      f.owned = std::move(wr.inline_data);
      f.total = f.owned.size();
      if (f.total) f.payload.push_back({f.owned.data(), f.total, 0, nullptr});
    } else {
      f.payload = std::move(local);
      f.total = wr.length;
      if (!stage_device_payload(f)) {
        qp->out.tx.pop_back();
        wr.local_error = IBV_WC_LOC_PROT_ERR;
        qp->sq_blocked = true;
        qp->inflight.push_back(std::move(wr));
        if (qp->inflight.size() == 1) complete_through(qp, qp->inflight.front().psn - 1);
        return;
      }
    }
    qp->inflight.push_back(std::move(wr));
  }
}

// Handles one answer on the requester stream. Blocked: wait for more bytes.
Io read_responses(Context* c, Qp* qp, size_t& budget) {
  Stream& s = qp->out;
  for (;;) {
    if (!s.have_header) {
      Io r = next_header(s);
      if (r != Io::Done) return r;
      const WireHeader& h = s.hdr;
      set_sink(s, {}, 0);
      if (qp->state != IBV_QPS_RTS) {
        // Answers to a QP in error are dropped (its work has been flushed).
        if (static_cast<Op>(h.op) == Op::ReadResp) s.payload_left = h.length;
      } else if (static_cast<Op>(h.op) == Op::Ack) {
        complete_through(qp, h.psn);
      } else if (static_cast<Op>(h.op) == Op::Nak) {
        complete_through(qp, h.psn - 1);
        if (!qp->inflight.empty() && qp->inflight.front().psn == h.psn)
          fail_requester(qp, static_cast<ibv_wc_status>(h.status), h.vendor);
        else
          qp_to_error(qp);
      } else if (static_cast<Op>(h.op) == Op::ReadResp) {
        complete_through(qp, h.psn - 1);
        if (qp->state == IBV_QPS_RTS && !qp->inflight.empty() && qp->inflight.front().psn == h.psn &&
            qp->inflight.front().opcode == IBV_WR_RDMA_READ) {
          set_sink(s, qp->inflight.front().local, h.length);
        } else {
          s.payload_left = h.length;
        }
      }
    }
    Io r = pump_payload(c, s, budget);
    if (r != Io::Done) return r;
    if (static_cast<Op>(s.hdr.op) == Op::ReadResp && qp->state == IBV_QPS_RTS && !qp->inflight.empty() &&
        qp->inflight.front().psn == s.hdr.psn) {
      SendWr wr = std::move(qp->inflight.front());
      qp->inflight.pop_front();
      if (s.sink_broken) {
        qp->inflight.push_front(std::move(wr));
        fail_requester(qp, IBV_WC_LOC_PROT_ERR, kVendorLocalProtection);
      } else {
        complete_send(qp, wr, IBV_WC_SUCCESS, 0);
        complete_through(qp, s.hdr.psn);
      }
    }
    s.have_header = false;
  }
}

// ---- responder side -------------------------------------------------------------------------

double rnr_delay_ms(uint8_t code) {
  static const double table[32] = {655.36, 0.01,  0.02,  0.03,  0.04,  0.06,   0.08,   0.12,
                                   0.16,   0.24,  0.32,  0.48,  0.64,  0.96,   1.28,   1.92,
                                   2.56,   3.84,  5.12,  7.68,  10.24, 15.36,  20.48,  30.72,
                                   40.96,  61.44, 81.92, 122.88, 163.84, 245.76, 327.68, 491.52};
  return table[code & 31];
}

// The responder rejects request `psn`: the requester is told, and this QP enters the error state.
void responder_error(Qp* qp, uint64_t psn, ibv_wc_status status, uint32_t vendor, ibv_event_type event) {
  flush_ack(qp);
  TxFrame& f = queue_frame(qp->in, Op::Nak, psn);
  f.hdr.status = static_cast<uint8_t>(status);
  f.hdr.vendor = vendor;
  log::info("soft verbs: QP {:#x} rejected request {} from QP {:#x}: {}", qp->h.verbs.qp_num, psn, qp->dest_qpn,
            vendor_error_text(vendor));
  ibv_async_event ev{};
  ev.event_type = event;
  ev.element.qp = &qp->h.verbs;
  push_async(qp->ctx, ev);
  qp_to_error(qp);
}

// Whether a receive is posted for a request that needs one; parks the stream while none is
// (receiver not ready), and gives up once the requester's RNR retries would be spent.
bool receive_ready(Qp* qp) {
  Stream& s = qp->in;
  if (!qp->rq.empty()) {
    s.parked = false;
    return true;
  }
  auto now = Clock::now();
  if (!s.parked) {
    s.parked = true;
    s.parked_since = now;
  }
  const uint8_t requester_rnr_retry = s.hdr.status;
  if (requester_rnr_retry < 7) {  // 7 means retry for ever
    double limit_ms = rnr_delay_ms(qp->min_rnr_timer) * (requester_rnr_retry + 1);
    if (std::chrono::duration<double, std::milli>(now - s.parked_since).count() > limit_ms) {
      s.parked = false;
      flush_ack(qp);
      TxFrame& f = queue_frame(qp->in, Op::Nak, s.hdr.psn);
      f.hdr.status = IBV_WC_RNR_RETRY_EXC_ERR;
      f.hdr.vendor = kVendorReceiverNotReady;
      qp->in_discard = true;  // the requester is in error now: the rest of its stream is void
      return true;
    }
  }
  return false;
}

// Checks a new request and points the stream's sink at its target (s.applies), or rejects it.
void accept_request(Context* c, Qp* qp, const WireHeader& h, Op op) {
  Stream& s = qp->in;
  if (op == Op::Write || op == Op::WriteImm) {
    if (h.length == 0) {  // zero-length writes touch no memory and check no key
      s.applies = true;
      return;
    }
    Segment seg;
    uint32_t v = check_remote(c, qp, h.addr, h.length, h.rkey, IBV_ACCESS_REMOTE_WRITE, seg);
    if (v != kVendorNone) {
      responder_error(qp, h.psn, IBV_WC_REM_ACCESS_ERR, v, IBV_EVENT_QP_ACCESS_ERR);
      return;
    }
    set_sink(s, {seg}, h.length);
    s.applies = true;
  } else if (op == Op::Send || op == Op::SendImm) {
    RecvWr& rwr = qp->rq.front();
    std::vector<Segment> segs;
    uint64_t room = 0;
    for (auto& g : rwr.sge) room += g.length;
    if (!resolve_local(c, qp, rwr.sge, true, segs)) {
      RecvWr w = std::move(rwr);
      qp->rq.pop_front();
      complete_recv(qp, w, IBV_WC_LOC_PROT_ERR, IBV_WC_RECV, 0, nullptr, kVendorLocalProtection);
      responder_error(qp, h.psn, IBV_WC_REM_OP_ERR, kVendorLocalProtection, IBV_EVENT_QP_REQ_ERR);
    } else if (h.length > room) {
      RecvWr w = std::move(rwr);
      qp->rq.pop_front();
      complete_recv(qp, w, IBV_WC_LOC_LEN_ERR, IBV_WC_RECV, 0, nullptr, kVendorLength);
      responder_error(qp, h.psn, IBV_WC_REM_INV_REQ_ERR, kVendorLength, IBV_EVENT_QP_REQ_ERR);
    } else {
      set_sink(s, std::move(segs), h.length);
      s.applies = true;
    }
  } else if (op == Op::ReadReq) {
    Segment seg;
    uint32_t v =
        h.length == 0 ? kVendorNone : check_remote(c, qp, h.addr, h.length, h.rkey, IBV_ACCESS_REMOTE_READ, seg);
    if (v != kVendorNone) {
      responder_error(qp, h.psn, IBV_WC_REM_ACCESS_ERR, v, IBV_EVENT_QP_ACCESS_ERR);
      return;
    }
    flush_ack(qp);  // answers leave in request order
    TxFrame& f = queue_frame(qp->in, Op::ReadResp, h.psn);
    f.hdr.length = h.length;
    f.total = h.length;
    if (h.length) f.payload.push_back(seg);
    if (!stage_device_payload(f)) {
      qp->in.tx.pop_back();
      responder_error(qp, h.psn, IBV_WC_REM_ACCESS_ERR, kVendorAccessDenied, IBV_EVENT_QP_ACCESS_ERR);
    }
  }
}

// Handles the peer's requests on the responder stream.
Io read_requests(Context* c, Qp* qp, size_t& budget) {
  Stream& s = qp->in;
  for (;;) {
    if (!s.have_header) {
      Io r = next_header(s);
      if (r != Io::Done) return r;
      s.started = false;
    }
    const WireHeader h = s.hdr;
    const Op op = static_cast<Op>(h.op);
    const bool has_payload = op == Op::Write || op == Op::WriteImm || op == Op::Send || op == Op::SendImm;
    const bool needs_recv = op == Op::WriteImm || op == Op::Send || op == Op::SendImm;
    if (!s.started) {
      if (!qp->in_discard && needs_recv && !receive_ready(qp)) return Io::Blocked;
      // A rejected or void request's payload is still read past (and dropped).
      set_sink(s, {}, has_payload ? h.length : 0);
      s.applies = false;
      if (!qp->in_discard) accept_request(c, qp, h, op);
      s.started = true;
    }
    Io r = pump_payload(c, s, budget);
    if (r != Io::Done) return r;
    s.have_header = false;
    s.sink.clear();
    if (!s.applies || qp->in_discard) continue;
    if (s.sink_broken) {  // the target region was deregistered while the payload arrived
      responder_error(qp, h.psn, IBV_WC_REM_ACCESS_ERR, kVendorBadKey, IBV_EVENT_QP_ACCESS_ERR);
      continue;
    }
    if (needs_recv) {
      RecvWr w = std::move(qp->rq.front());
      qp->rq.pop_front();
      const uint32_t* imm = op == Op::Send ? nullptr : &h.imm;
      complete_recv(qp, w, IBV_WC_SUCCESS, op == Op::WriteImm ? IBV_WC_RECV_RDMA_WITH_IMM : IBV_WC_RECV,
                    static_cast<uint32_t>(h.length), imm);
    }
    qp->ack_pending = true;
    qp->ack_psn = h.psn;
  }
}

// ---- the service thread ---------------------------------------------------------------------

void close_pending(PendingSocket& p) {
  if (p.fd >= 0) ::close(p.fd);
  p.fd = -1;
}

void accept_all(Context* c) {
  for (;;) {
    int fd = ::accept4(c->listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    PendingSocket p;
    p.fd = fd;
    p.since = Clock::now();
    c->pending.push_back(p);
  }
}

// Binds accepted sockets to their QPs once the hello has arrived and the QP can receive.
void serve_pending(Context* c) {
  for (auto& p : c->pending) {
    while (p.got < sizeof(WireHeader)) {
      ssize_t n = ::recv(p.fd, p.hello + p.got, sizeof(WireHeader) - p.got, MSG_DONTWAIT);
      if (n > 0) {
        p.got += static_cast<size_t>(n);
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) close_pending(p);
      break;
    }
    if (p.fd < 0 || p.got < sizeof(WireHeader)) continue;
    WireHeader h;
    std::memcpy(&h, p.hello, sizeof h);
    auto it = c->qps.find(static_cast<uint32_t>(h.length));
    if (static_cast<Op>(h.op) != Op::Hello || it == c->qps.end()) {
      close_pending(p);  // no such QP: the requester's retries run out
      continue;
    }
    Qp* qp = it->second;
    if (qp->state != IBV_QPS_RTR && qp->state != IBV_QPS_RTS) {
      if (Clock::now() - p.since > kHelloPatience) close_pending(p);
      continue;  // packets to a QP not yet ready are dropped; the requester retries
    }
    if (h.rkey != qp->dest_qpn || h.addr != qp->dlid) {
      close_pending(p);  // an RC QP talks to the one peer it was connected to
      continue;
    }
    qp->in.reset();
    qp->in.fd = p.fd;
    qp->in_discard = false;
    p.fd = -1;
  }
  std::erase_if(c->pending, [](const PendingSocket& p) { return p.fd < 0; });
}

// The injected drop: every connection of the context breaks at once.
void drop_everything(Context* c) {
  c->drop_now = false;
  log::info("soft verbs: injected fault: context LID {} drops all its connections", c->lid);
  for (auto& p : c->pending) close_pending(p);
  c->pending.clear();
  for (auto& [qpn, qp] : c->qps) {
    if (qp->out.fd >= 0) ::shutdown(qp->out.fd, SHUT_RDWR);
    if (qp->in.fd >= 0) ::shutdown(qp->in.fd, SHUT_RDWR);
    qp->in.reset();
    peer_gone(qp);
  }
  if (c->fault.kind == Fault::Kind::PortDown) {
    c->port_down = true;
    ibv_async_event ev{};
    ev.event_type = IBV_EVENT_PORT_ERR;
    ev.element.port_num = 1;
    push_async(c, ev);
  }
}

// Responder side first for every QP, then the requester side: bytes a peer sent before it went
// away are delivered before its disappearance fails anything.
void serve_responder(Context* c, Qp* qp) {
  if (qp->in.fd < 0) return;
  if (qp->in.readable || qp->in.parked || qp->in.end > qp->in.begin) {
    size_t budget = kBudgetPerStream;
    if (read_requests(c, qp, budget) == Io::Closed) {
      qp->in.reset();  // the requester went away; a responder has nothing to report
      return;
    }
  }
  flush_ack(qp);
  if (flush_tx(c, qp->in) == Io::Closed) qp->in.reset();
}

void serve_requester(Context* c, Qp* qp) {
  if (qp->state == IBV_QPS_RTS) start_sends(c, qp);
  if (qp->out.fd >= 0) {
    if (flush_tx(c, qp->out) == Io::Closed) {
      peer_gone(qp);
    } else if (qp->out.readable || qp->out.end > qp->out.begin) {
      size_t budget = kBudgetPerStream;
      if (read_responses(c, qp, budget) == Io::Closed) peer_gone(qp);
    }
  }
  if (qp->state == IBV_QPS_RTS && !qp->sq.empty() && !qp->sq_blocked) c->more_work = true;
}

void service_main(Context* c) {
  struct Watch {
    uint32_t qpn;
    bool in;
  };
  std::vector<pollfd> fds;
  std::vector<Watch> watches;
  for (;;) {
    int timeout_ms = -1;
    fds.clear();
    watches.clear();
    {
      std::lock_guard lk(c->mu);
      fds.push_back({c->wake_fd, POLLIN, 0});
      fds.push_back({c->listen_fd, POLLIN, 0});
      watches.push_back({0, false});
      watches.push_back({0, false});
      for (auto& p : c->pending) {
        fds.push_back({p.fd, POLLIN, 0});
        watches.push_back({0, false});
        if (p.got == sizeof(WireHeader)) timeout_ms = 10;  // waiting for its QP to become ready
      }
      for (auto& [qpn, qp] : c->qps) {
        if (qp->out.fd >= 0) {
          fds.push_back({qp->out.fd, static_cast<short>(POLLIN | (qp->out.tx.empty() ? 0 : POLLOUT)), 0});
          watches.push_back({qpn, false});
        }
        if (qp->in.fd >= 0 && !qp->in.parked) {
          fds.push_back({qp->in.fd, static_cast<short>(POLLIN | (qp->in.tx.empty() ? 0 : POLLOUT)), 0});
          watches.push_back({qpn, true});
        }
        if (qp->in.parked) timeout_ms = timeout_ms < 0 ? 1 : std::min(timeout_ms, 1);
      }
      if (c->more_work || c->drop_now) timeout_ms = 0;
      c->more_work = false;
    }
    ::poll(fds.data(), fds.size(), timeout_ms);
    if (c->stop.load()) return;
    std::lock_guard lk(c->mu);
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(c->wake_fd, &v, sizeof v);
    }
    c->wake_pending.store(false);
    for (size_t i = 2; i < fds.size(); ++i) {
      if (watches[i].qpn == 0 || !fds[i].revents) continue;
      auto it = c->qps.find(watches[i].qpn);
      if (it == c->qps.end()) continue;
      Stream& s = watches[i].in ? it->second->in : it->second->out;
      if (s.fd == fds[i].fd) s.readable = (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    }
    if (fds[1].revents & POLLIN) accept_all(c);
    if (!c->pending.empty()) serve_pending(c);
    if (c->drop_now) drop_everything(c);
    for (auto& [qpn, qp] : c->qps) serve_responder(c, qp);
    for (auto& [qpn, qp] : c->qps) {
      serve_requester(c, qp);
      qp->out.readable = qp->in.readable = false;
    }
  }
}

// ---- verbs entry points -----------------------------------------------------------------------

ibv_device** get_device_list(int* num) {
  auto** list = static_cast<ibv_device**>(std::calloc(2, sizeof(ibv_device*)));
  if (!list) {
    errno = ENOMEM;
    return nullptr;
  }
  list[0] = soft_device();
  if (num) *num = 1;
  return list;
}

void free_device_list(ibv_device** list) { std::free(list); }

const char* get_device_name(ibv_device* device) { return device->name; }

ibv_context* open_device(ibv_device* device) {
  auto* c = new Context;
  c->h.self = c;
  c->h.verbs.device = device;
  c->h.verbs.cmd_fd = -1;
  c->h.verbs.num_comp_vectors = 1;
  c->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (c->listen_fd < 0 || ::bind(c->listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(c->listen_fd, SOMAXCONN) != 0 ||
      ::getsockname(c->listen_fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    if (c->listen_fd >= 0) ::close(c->listen_fd);
    delete c;
    errno = e;
    return nullptr;
  }
  c->lid = ntohs(a.sin_port);
  c->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  c->async_fd = ::eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
  c->h.verbs.async_fd = c->async_fd;
  c->next_key = (static_cast<uint32_t>(c->lid) << 16) ^ 0x2b00;
  c->fault = fault_from_environment();
  c->service = std::thread(service_main, c);
  return &c->h.verbs;
}

int close_device(ibv_context* context) {
  Context* c = of(context);
  c->stop.store(true);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(c->wake_fd, &one, sizeof one);
  c->service.join();
  for (auto& [qpn, qp] : c->qps) {
    qp->out.reset();
    qp->in.reset();
    delete qp;
  }
  for (auto& [key, mr] : c->mrs) delete mr;
  for (auto& p : c->pending) close_pending(p);
  ::close(c->listen_fd);
  ::close(c->wake_fd);
  ::close(c->async_fd);
  delete c;
  return 0;
}

int query_device(ibv_context* context, ibv_device_attr* attr) {
  Context* c = of(context);
  *attr = ibv_device_attr{};
  std::snprintf(attr->fw_ver, sizeof attr->fw_ver, "ringlink-soft-1");
  attr->node_guid = htobe64(0x0200000000000000ull | c->lid);
  attr->sys_image_guid = attr->node_guid;
  attr->max_mr_size = kMaxMrSize;
  attr->page_size_cap = 4096;
  attr->max_qp = 1 << 16;
  attr->max_qp_wr = static_cast<int>(kMaxQpWr);
  attr->max_sge = static_cast<int>(kMaxSge);
  attr->max_cq = 1 << 16;
  attr->max_cqe = kMaxCqe;
  attr->max_mr = 1 << 20;
  attr->max_pd = 1 << 16;
  attr->max_qp_rd_atom = 16;
  attr->max_qp_init_rd_atom = 16;
  attr->phys_port_cnt = 1;
  return 0;
}

int query_port(ibv_context* context, uint8_t port, ibv_port_attr* attr) {
  Context* c = of(context);
  if (port != 1) return EINVAL;
  std::lock_guard lk(c->mu);
  *attr = ibv_port_attr{};
  attr->state = c->port_down ? IBV_PORT_DOWN : IBV_PORT_ACTIVE;
  attr->phys_state = c->port_down ? 3 : 5;  // Disabled / LinkUp
  attr->max_mtu = IBV_MTU_4096;
  attr->active_mtu = IBV_MTU_4096;
  attr->gid_tbl_len = 1;
  attr->max_msg_sz = static_cast<uint32_t>(kMaxMessage);
  attr->pkey_tbl_len = 1;
  attr->lid = c->lid;
  attr->sm_lid = c->lid;
  attr->lmc = 0;
  attr->link_layer = IBV_LINK_LAYER_INFINIBAND;
  attr->active_width = 1;  // 1X
  attr->active_speed = 0;
  return 0;
}

int query_gid(ibv_context* context, uint8_t port, int index, ibv_gid* gid) {
  Context* c = of(context);
  if (port != 1 || index != 0) return -1;
  // A link-local GID made from the LID, like a port GUID would make one.
  *gid = ibv_gid{};
  gid->raw[0] = 0xfe;
  gid->raw[1] = 0x80;
  gid->raw[8] = 0x02;
  gid->raw[14] = static_cast<uint8_t>(c->lid >> 8);
  gid->raw[15] = static_cast<uint8_t>(c->lid);
  return 0;
}

ibv_pd* alloc_pd(ibv_context* context) {
  Context* c = of(context);
  std::lock_guard lk(c->mu);
  auto* pd = new Pd;
  pd->h.self = pd;
  pd->h.verbs.context = context;
  pd->h.verbs.handle = c->next_key++;
  pd->ctx = c;
  ++c->users;
  return &pd->h.verbs;
}

int dealloc_pd(ibv_pd* p) {
  Pd* pd = of(p);
  std::lock_guard lk(pd->ctx->mu);
  if (pd->users > 0) return EBUSY;
  --pd->ctx->users;
  delete pd;
  return 0;
}

uint32_t new_key(Context* c) {
  // Keys are unique for the context's life and spread out, so a stale or forged key is unlikely to
  // name another region by accident.
  c->next_key += 0x9e37;
  if (c->next_key == 0) c->next_key = 0x9e37;
  return c->next_key;
}

ibv_mr* add_mr(Pd* pd, uintptr_t addr, size_t length, int access, bool gpu, cuda::CUcontext cuda_ctx) {
  Context* c = pd->ctx;
  auto* mr = new Mr;
  mr->h.self = mr;
  mr->pd = pd;
  mr->addr = addr;
  mr->length = length;
  mr->access = access;
  mr->gpu = gpu;
  mr->cuda_ctx = cuda_ctx;
  mr->key = new_key(c);
  while (c->mrs.count(mr->key)) mr->key = new_key(c);
  mr->h.verbs.context = &c->h.verbs;
  mr->h.verbs.pd = &pd->h.verbs;
  mr->h.verbs.addr = reinterpret_cast<void*>(addr);
  mr->h.verbs.length = length;
  mr->h.verbs.handle = mr->key;
  mr->h.verbs.lkey = mr->key;
  mr->h.verbs.rkey = mr->key;
  c->mrs[mr->key] = mr;
  ++pd->users;
  return &mr->h.verbs;
}

bool valid_access(int access) {
  // Remote write (and atomics) need local write, as the verbs specification demands.
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(access & IBV_ACCESS_LOCAL_WRITE)) return false;
  int known = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC |
              IBV_ACCESS_RELAXED_ORDERING;
  return (access & ~known) == 0;
}

ibv_mr* reg_mr(ibv_pd* p, void* addr, size_t length, int access) {
  Pd* pd = of(p);
  if (length == 0 || length > kMaxMrSize || !valid_access(access)) {
    errno = EINVAL;
    return nullptr;
  }
  // The pages must exist, as pinning them would require.
  const long page = ::sysconf(_SC_PAGESIZE);
  uintptr_t first = reinterpret_cast<uintptr_t>(addr) & ~static_cast<uintptr_t>(page - 1);
  uintptr_t last = reinterpret_cast<uintptr_t>(addr) + length;
  std::vector<unsigned char> residency((last - first + static_cast<uintptr_t>(page) - 1) / static_cast<uintptr_t>(page));
  if (::mincore(reinterpret_cast<void*>(first), last - first, residency.data()) != 0 && errno == ENOMEM) {
    errno = EFAULT;
    return nullptr;
  }
  std::lock_guard lk(pd->ctx->mu);
  return add_mr(pd, reinterpret_cast<uintptr_t>(addr), length, access, false, nullptr);
}

ibv_mr* reg_dmabuf_mr(ibv_pd* p, uint64_t offset, size_t length, uint64_t iova, int fd, int access) {
  Pd* pd = of(p);
  (void)offset;
  const cuda::CudaDriver* cuda = cuda::cuda_driver();
  if (!cuda) {
    errno = EOPNOTSUPP;  // device memory is out of reach without the CUDA driver
    return nullptr;
  }
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
    errno = EBADF;
    return nullptr;
  }
  if (length == 0 || !valid_access(access) || !cuda::is_device_pointer(*cuda, reinterpret_cast<void*>(iova))) {
    errno = EINVAL;
    return nullptr;
  }
  cuda::CUcontext ctx = nullptr;
  if (!cuda::make_pointer_context_current(*cuda, reinterpret_cast<void*>(iova)) || cuda->ctx_get_current(&ctx) != cuda::kCudaSuccess) {
    errno = EINVAL;
    return nullptr;
  }
  std::lock_guard lk(pd->ctx->mu);
  return add_mr(pd, static_cast<uintptr_t>(iova), length, access, true, ctx);
}

int dereg_mr(ibv_mr* m) {
  Mr* mr = of(m);
  Context* c = mr->pd->ctx;
  std::lock_guard lk(c->mu);
  c->mrs.erase(mr->key);
  --mr->pd->users;
  delete mr;
  return 0;
}

ibv_cq* create_cq(ibv_context* context, int cqe, void* cq_context, ibv_comp_channel* channel, int) {
  Context* c = of(context);
  if (cqe < 1 || cqe > kMaxCqe || channel) {
    errno = channel ? EOPNOTSUPP : EINVAL;  // completion channels are not part of the subset
    return nullptr;
  }
  std::lock_guard lk(c->mu);
  auto* cq = new Cq;
  cq->h.self = cq;
  cq->ctx = c;
  cq->capacity = static_cast<size_t>(cqe);
  cq->h.verbs.context = context;
  cq->h.verbs.cq_context = cq_context;
  cq->h.verbs.cqe = cqe;
  ++c->users;
  return &cq->h.verbs;
}

int destroy_cq(ibv_cq* q) {
  Cq* cq = of(q);
  Context* c = cq->ctx;
  std::lock_guard lk(c->mu);
  if (cq->users > 0) return EBUSY;
  --c->users;
  delete cq;
  return 0;
}

ibv_qp* create_qp(ibv_pd* p, ibv_qp_init_attr* init) {
  Pd* pd = of(p);
  Context* c = pd->ctx;
  if (init->qp_type != IBV_QPT_RC || init->srq) {
    errno = EOPNOTSUPP;
    return nullptr;
  }
  if (!init->send_cq || !init->recv_cq || of(init->send_cq)->ctx != c || of(init->recv_cq)->ctx != c ||
      init->cap.max_send_wr > kMaxQpWr || init->cap.max_recv_wr > kMaxQpWr || init->cap.max_send_sge > kMaxSge ||
      init->cap.max_recv_sge > kMaxSge || init->cap.max_inline_data > kMaxInline) {
    errno = EINVAL;
    return nullptr;
  }
  std::lock_guard lk(c->mu);
  auto* qp = new Qp;
  qp->h.self = qp;
  qp->ctx = c;
  qp->pd = pd;
  qp->scq = of(init->send_cq);
  qp->rcq = of(init->recv_cq);
  qp->cap = init->cap;
  qp->cap.max_send_wr = std::max<uint32_t>(1, qp->cap.max_send_wr);
  qp->cap.max_recv_wr = std::max<uint32_t>(1, qp->cap.max_recv_wr);
  qp->cap.max_send_sge = std::max<uint32_t>(1, qp->cap.max_send_sge);
  qp->cap.max_recv_sge = std::max<uint32_t>(1, qp->cap.max_recv_sge);
  init->cap = qp->cap;
  qp->sig_all = init->sq_sig_all != 0;
  uint32_t qpn = c->next_qpn++ & 0xffffff;
  while (qpn == 0 || c->qps.count(qpn)) qpn = c->next_qpn++ & 0xffffff;
  qp->h.verbs.context = &c->h.verbs;
  qp->h.verbs.qp_context = init->qp_context;
  qp->h.verbs.pd = p;
  qp->h.verbs.send_cq = init->send_cq;
  qp->h.verbs.recv_cq = init->recv_cq;
  qp->h.verbs.qp_num = qpn;
  qp->h.verbs.handle = qpn;
  qp->h.verbs.qp_type = IBV_QPT_RC;
  set_state(qp, IBV_QPS_RESET);
  c->qps[qpn] = qp;
  ++pd->users;
  ++qp->scq->users;
  ++qp->rcq->users;
  return &qp->h.verbs;
}

// Opens the requester stream to the destination QP (at RTR: its LID is a loopback port).
void connect_requester(Context* c, Qp* qp) {
  qp->out.reset();
  qp->peer_gone = false;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(qp->dlid);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    qp->peer_gone = true;  // nobody there: sends will exhaust their retries
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  qp->out.fd = fd;
  TxFrame& hello = queue_frame(qp->out, Op::Hello, 0);
  hello.hdr.addr = c->lid;
  hello.hdr.rkey = qp->h.verbs.qp_num;
  hello.hdr.length = qp->dest_qpn;
  wake(c);
}

// Attribute masks per transition for RC QPs: {required, optional}.
struct Transition {
  int required;
  int optional;
};

bool transition_rules(ibv_qp_state from, ibv_qp_state to, Transition& t) {
  constexpr int kState = IBV_QP_STATE;
  if (to == IBV_QPS_RESET || to == IBV_QPS_ERR) {
    t = {kState, IBV_QP_CUR_STATE};
    return true;
  }
  if (from == IBV_QPS_RESET && to == IBV_QPS_INIT) {
    t = {kState | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, 0};
    return true;
  }
  if (from == IBV_QPS_INIT && to == IBV_QPS_INIT) {
    t = {0, IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS};
    return true;
  }
  if (from == IBV_QPS_INIT && to == IBV_QPS_RTR) {
    t = {kState | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
             IBV_QP_MIN_RNR_TIMER,
         IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX};
    return true;
  }
  if (from == IBV_QPS_RTR && to == IBV_QPS_RTS) {
    t = {kState | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
         IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER | IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE};
    return true;
  }
  if (from == IBV_QPS_RTS && to == IBV_QPS_RTS) {
    t = {0, IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER | IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE};
    return true;
  }
  return false;
}

int modify_qp(ibv_qp* q, ibv_qp_attr* attr, int mask) {
  Qp* qp = of(q);
  Context* c = qp->ctx;
  std::lock_guard lk(c->mu);
  ibv_qp_state from = qp->state;
  ibv_qp_state to = (mask & IBV_QP_STATE) ? attr->qp_state : from;
  if ((mask & IBV_QP_CUR_STATE) && attr->cur_qp_state != from) return EINVAL;
  Transition t{};
  if (!transition_rules(from, to, t)) return EINVAL;
  int given = mask & ~IBV_QP_STATE;
  int required = t.required & ~IBV_QP_STATE;
  if ((given & required) != required || (given & ~(required | t.optional)) != 0) return EINVAL;
  // Values an HCA would refuse.
  if ((mask & IBV_QP_PORT) && attr->port_num != 1) return EINVAL;
  if ((mask & IBV_QP_ACCESS_FLAGS) && !valid_access(attr->qp_access_flags)) return EINVAL;
  if ((mask & IBV_QP_PATH_MTU) && (attr->path_mtu < IBV_MTU_256 || attr->path_mtu > IBV_MTU_4096)) return EINVAL;
  if ((mask & IBV_QP_AV) && (attr->ah_attr.port_num != 1 || (!attr->ah_attr.is_global && attr->ah_attr.dlid == 0)))
    return EINVAL;
  if ((mask & IBV_QP_TIMEOUT) && attr->timeout > 31) return EINVAL;
  if ((mask & IBV_QP_RETRY_CNT) && attr->retry_cnt > 7) return EINVAL;
  if ((mask & IBV_QP_RNR_RETRY) && attr->rnr_retry > 7) return EINVAL;
  if ((mask & IBV_QP_MIN_RNR_TIMER) && attr->min_rnr_timer > 31) return EINVAL;
  if ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && attr->max_rd_atomic > 16) return EINVAL;
  if ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && attr->max_dest_rd_atomic > 16) return EINVAL;

  if (mask & IBV_QP_PKEY_INDEX) qp->pkey_index = attr->pkey_index;
  if (mask & IBV_QP_PORT) qp->port = attr->port_num;
  if (mask & IBV_QP_ACCESS_FLAGS) qp->access = attr->qp_access_flags;
  if (mask & IBV_QP_PATH_MTU) qp->path_mtu = attr->path_mtu;
  if (mask & IBV_QP_DEST_QPN) qp->dest_qpn = attr->dest_qp_num;
  if (mask & IBV_QP_AV) {
    qp->ah = attr->ah_attr;
    qp->dlid = attr->ah_attr.dlid;
  }
  if (mask & IBV_QP_RQ_PSN) qp->rq_psn = attr->rq_psn;
  if (mask & IBV_QP_SQ_PSN) qp->sq_psn = attr->sq_psn;
  if (mask & IBV_QP_TIMEOUT) qp->timeout = attr->timeout;
  if (mask & IBV_QP_RETRY_CNT) qp->retry_cnt = attr->retry_cnt;
  if (mask & IBV_QP_RNR_RETRY) qp->rnr_retry = attr->rnr_retry;
  if (mask & IBV_QP_MIN_RNR_TIMER) qp->min_rnr_timer = attr->min_rnr_timer;
  if (mask & IBV_QP_MAX_QP_RD_ATOMIC) qp->max_rd_atomic = attr->max_rd_atomic;
  if (mask & IBV_QP_MAX_DEST_RD_ATOMIC) qp->max_dest_rd_atomic = attr->max_dest_rd_atomic;

  if (to == IBV_QPS_ERR) {
    qp_to_error(qp);
    return 0;
  }
  if (to == IBV_QPS_RESET) {
    // Reset discards everything without completions.
    qp->sq.clear();
    qp->inflight.clear();
    qp->rq.clear();
    qp->out.reset();
    qp->in.reset();
    qp->next_psn = 1;
    qp->sq_blocked = qp->peer_gone = qp->ack_pending = qp->in_discard = false;
    set_state(qp, IBV_QPS_RESET);
    return 0;
  }
  set_state(qp, to);
  if (from == IBV_QPS_INIT && to == IBV_QPS_RTR) connect_requester(c, qp);
  if (to == IBV_QPS_RTS) wake(c);
  return 0;
}

int query_qp(ibv_qp* q, ibv_qp_attr* attr, int, ibv_qp_init_attr* init) {
  Qp* qp = of(q);
  std::lock_guard lk(qp->ctx->mu);
  *attr = ibv_qp_attr{};
  attr->qp_state = qp->state;
  attr->cur_qp_state = qp->state;
  attr->path_mtu = qp->path_mtu;
  attr->dest_qp_num = qp->dest_qpn;
  attr->qp_access_flags = qp->access;
  attr->cap = qp->cap;
  attr->ah_attr = qp->ah;
  attr->port_num = qp->port;
  attr->timeout = qp->timeout;
  attr->retry_cnt = qp->retry_cnt;
  attr->rnr_retry = qp->rnr_retry;
  attr->min_rnr_timer = qp->min_rnr_timer;
  attr->max_rd_atomic = qp->max_rd_atomic;
  attr->max_dest_rd_atomic = qp->max_dest_rd_atomic;
  if (init) {
    *init = ibv_qp_init_attr{};
    init->send_cq = &qp->scq->h.verbs;
    init->recv_cq = &qp->rcq->h.verbs;
    init->cap = qp->cap;
    init->qp_type = IBV_QPT_RC;
    init->sq_sig_all = qp->sig_all;
  }
  return 0;
}

int destroy_qp(ibv_qp* q) {
  Qp* qp = of(q);
  Context* c = qp->ctx;
  std::lock_guard lk(c->mu);
  c->qps.erase(q->qp_num);
  qp->out.reset();
  qp->in.reset();
  --qp->pd->users;
  --qp->scq->users;
  --qp->rcq->users;
  delete qp;
  return 0;
}

void count_for_faults(Context* c, SendWr& wr) {
  ++c->sends_posted;
  const Fault& f = c->fault;
  if ((f.kind == Fault::Kind::DropPeer || f.kind == Fault::Kind::PortDown) && c->sends_posted == f.after)
    c->drop_now = true;
  bool is_write = wr.opcode == IBV_WR_RDMA_WRITE || wr.opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
  if (!is_write || wr.length == 0) return;
  ++c->writes_posted;
  if (c->writes_posted != f.after) return;
  if (f.kind == Fault::Kind::BadRkey) {
    wr.rkey ^= 0x00a50000u;  // still looks like a key, names no region
    log::info("soft verbs: injected fault: RDMA WRITE with a wrong rkey");
  } else if (f.kind == Fault::Kind::OobWrite) {
    wr.remote_addr += uint64_t{1} << 40;
    log::info("soft verbs: injected fault: RDMA WRITE past its region");
  }
}

int post_send(ibv_qp* q, ibv_send_wr* wr, ibv_send_wr** bad) {
  Qp* qp = of(q);
  Context* c = qp->ctx;
  std::lock_guard lk(c->mu);
  for (; wr; wr = wr->next) {
    auto fail = [&](int e) {
      if (bad) *bad = wr;
      return e;
    };
    if (qp->state != IBV_QPS_RTS && qp->state != IBV_QPS_ERR) return fail(EINVAL);
    if (wr->num_sge < 0 || static_cast<uint32_t>(wr->num_sge) > qp->cap.max_send_sge) return fail(EINVAL);
    switch (wr->opcode) {
      case IBV_WR_RDMA_WRITE:
      case IBV_WR_RDMA_WRITE_WITH_IMM:
      case IBV_WR_SEND:
      case IBV_WR_SEND_WITH_IMM:
      case IBV_WR_RDMA_READ: break;
      default: return fail(EINVAL);
    }
    if (qp->sq.size() + qp->inflight.size() >= qp->cap.max_send_wr) return fail(ENOMEM);
    SendWr w;
    w.wr_id = wr->wr_id;
    w.opcode = wr->opcode;
    w.signaled = qp->sig_all || (wr->send_flags & IBV_SEND_SIGNALED);
    w.imm = wr->imm_data;
    w.remote_addr = wr->wr.rdma.remote_addr;
    w.rkey = wr->wr.rdma.rkey;
    for (int i = 0; i < wr->num_sge; ++i) w.length += wr->sg_list[i].length;
    if (w.length > kMaxMessage) return fail(EINVAL);
    if (wr->send_flags & IBV_SEND_INLINE) {
      if (wr->opcode == IBV_WR_RDMA_READ || w.length > qp->cap.max_inline_data) return fail(EINVAL);
      w.inlined = true;
      w.inline_data.resize(w.length);
      size_t off = 0;
      for (int i = 0; i < wr->num_sge; ++i) {
        std::memcpy(w.inline_data.data() + off, reinterpret_cast<const void*>(wr->sg_list[i].addr),
                    wr->sg_list[i].length);
        off += wr->sg_list[i].length;
      }
    } else {
      w.sge.assign(wr->sg_list, wr->sg_list + wr->num_sge);
    }
    count_for_faults(c, w);
    if (qp->state == IBV_QPS_ERR) {
      complete_send(qp, w, IBV_WC_WR_FLUSH_ERR, 0);
      continue;
    }
    qp->sq.push_back(std::move(w));
  }
  // Put the work on the wire from this thread when the socket takes it all: a message then costs
  // no hand-off to the service thread (which still reads the answers).
  if (qp->state == IBV_QPS_RTS && !c->drop_now && qp->out.fd >= 0 && !qp->peer_gone) {
    start_sends(c, qp);
    if (qp->out.fd >= 0 && flush_tx(c, qp->out) == Io::Done && qp->sq.empty()) return 0;
  }
  wake(c);
  return 0;
}

int post_recv(ibv_qp* q, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  Qp* qp = of(q);
  Context* c = qp->ctx;
  std::lock_guard lk(c->mu);
  bool resume = false;
  for (; wr; wr = wr->next) {
    if (qp->state == IBV_QPS_RESET || wr->num_sge < 0 || static_cast<uint32_t>(wr->num_sge) > qp->cap.max_recv_sge) {
      if (bad) *bad = wr;
      return EINVAL;
    }
    if (qp->rq.size() >= qp->cap.max_recv_wr) {
      if (bad) *bad = wr;
      return ENOMEM;
    }
    RecvWr w{wr->wr_id, std::vector<ibv_sge>(wr->sg_list, wr->sg_list + wr->num_sge)};
    if (qp->state == IBV_QPS_ERR) {
      complete_recv(qp, w, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0, nullptr);
      continue;
    }
    qp->rq.push_back(std::move(w));
    resume = resume || qp->in.parked;
  }
  if (resume) wake(c);
  return 0;
}

int poll_cq(ibv_cq* q, int n, ibv_wc* wc) {
  Cq* cq = of(q);
  std::lock_guard lk(cq->mu);
  int got = 0;
  while (got < n && !cq->entries.empty()) {
    wc[got++] = cq->entries.front();
    cq->entries.pop_front();
  }
  return got;
}

int get_async_event(ibv_context* context, ibv_async_event* event) {
  Context* c = of(context);
  uint64_t v;
  if (::read(c->async_fd, &v, sizeof v) != static_cast<ssize_t>(sizeof v)) return -1;
  std::lock_guard lk(c->mu);
  if (c->async_events.empty()) {
    errno = EAGAIN;
    return -1;
  }
  *event = c->async_events.front();
  c->async_events.pop_front();
  return 0;
}

void ack_async_event(ibv_async_event*) {}

const char* wc_status_str(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS: return "success";
    case IBV_WC_LOC_LEN_ERR: return "local length error";
    case IBV_WC_LOC_QP_OP_ERR: return "local QP operation error";
    case IBV_WC_LOC_EEC_OP_ERR: return "local EE context operation error";
    case IBV_WC_LOC_PROT_ERR: return "local protection error";
    case IBV_WC_WR_FLUSH_ERR: return "Work Request Flushed Error";
    case IBV_WC_MW_BIND_ERR: return "memory management operation error";
    case IBV_WC_BAD_RESP_ERR: return "bad response error";
    case IBV_WC_LOC_ACCESS_ERR: return "local access error";
    case IBV_WC_REM_INV_REQ_ERR: return "remote invalid request error";
    case IBV_WC_REM_ACCESS_ERR: return "remote access error";
    case IBV_WC_REM_OP_ERR: return "remote operation error";
    case IBV_WC_RETRY_EXC_ERR: return "transport retry counter exceeded";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "RNR retry counter exceeded";
    case IBV_WC_LOC_RDD_VIOL_ERR: return "local RDD violation error";
    case IBV_WC_REM_INV_RD_REQ_ERR: return "remote invalid RD request";
    case IBV_WC_REM_ABORT_ERR: return "aborted error";
    case IBV_WC_INV_EECN_ERR: return "invalid EE context number";
    case IBV_WC_INV_EEC_STATE_ERR: return "invalid EE context state";
    case IBV_WC_FATAL_ERR: return "fatal error";
    case IBV_WC_RESP_TIMEOUT_ERR: return "response timeout error";
    case IBV_WC_GENERAL_ERR: return "general error";
    default: return "unknown";
  }
}

const char* event_type_str(ibv_event_type type) {
  switch (type) {
    case IBV_EVENT_CQ_ERR: return "CQ error";
    case IBV_EVENT_QP_FATAL: return "local work queue catastrophic error";
    case IBV_EVENT_QP_REQ_ERR: return "invalid request local work queue error";
    case IBV_EVENT_QP_ACCESS_ERR: return "local access violation work queue error";
    case IBV_EVENT_COMM_EST: return "communication established";
    case IBV_EVENT_PORT_ACTIVE: return "port active";
    case IBV_EVENT_PORT_ERR: return "port error";
    case IBV_EVENT_DEVICE_FATAL: return "local catastrophic error";
    default: return "unknown";
  }
}

VerbsApi make_table() {
  VerbsApi a;
  a.origin = "soft";
  a.is_soft = true;
  a.get_device_list = get_device_list;
  a.free_device_list = free_device_list;
  a.get_device_name = get_device_name;
  a.open_device = open_device;
  a.close_device = close_device;
  a.query_device = query_device;
  a.query_port = query_port;
  a.query_gid = query_gid;
  a.alloc_pd = alloc_pd;
  a.dealloc_pd = dealloc_pd;
  a.reg_mr = reg_mr;
  a.reg_dmabuf_mr = reg_dmabuf_mr;
  a.dereg_mr = dereg_mr;
  a.create_cq = create_cq;
  a.destroy_cq = destroy_cq;
  a.create_qp = create_qp;
  a.modify_qp = modify_qp;
  a.query_qp = query_qp;
  a.destroy_qp = destroy_qp;
  a.post_send = post_send;
  a.post_recv = post_recv;
  a.poll_cq = poll_cq;
  a.get_async_event = get_async_event;
  a.ack_async_event = ack_async_event;
  a.wc_status_str = wc_status_str;
  a.event_type_str = event_type_str;
  a.vendor_error_str = vendor_error_text;
  return a;
}

}  // namespace

const char* vendor_error_text(uint32_t v) {
  switch (v) {
    case kVendorNone: return "no error";
    case kVendorBadKey: return "no memory region with that key in the protection domain";
    case kVendorOutOfBounds: return "access outside the memory region";
    case kVendorAccessDenied: return "the memory region does not allow this access";
    case kVendorPeerGone: return "the remote end is gone";
    case kVendorReceiverNotReady: return "no receive posted (receiver not ready)";
    case kVendorLength: return "message longer than the posted receive";
    case kVendorLocalProtection: return "local scatter/gather entry outside a registered region";
    default: return "unknown vendor error";
  }
}

Fault parse_fault(const std::string& spec) {
  Fault f;
  std::string kind = spec, count;
  if (auto colon = spec.find(':'); colon != std::string::npos) {
    kind = spec.substr(0, colon);
    count = spec.substr(colon + 1);
  }
  if (kind == "drop-peer")
    f.kind = Fault::Kind::DropPeer;
  else if (kind == "bad-rkey")
    f.kind = Fault::Kind::BadRkey;
  else if (kind == "oob-write")
    f.kind = Fault::Kind::OobWrite;
  else if (kind == "port-down")
    f.kind = Fault::Kind::PortDown;
  else if (kind == "none" || kind.empty())
    return f;
  else
    throw std::invalid_argument("unknown soft verbs fault '" + kind + "'");
  if (!count.empty()) {
    char* end = nullptr;
    unsigned long long n = std::strtoull(count.c_str(), &end, 10);
    if (!end || *end || n == 0) throw std::invalid_argument("bad soft verbs fault count '" + count + "'");
    f.after = n;
  }
  return f;
}

Fault fault_from_environment() {
  const char* v = std::getenv("RINGLINK_SOFT_VERBS_FAULT");
  if (!v || !*v) return {};
  std::string spec(v);
  if (auto at = spec.find('@'); at != std::string::npos) {
    const char* rank = std::getenv("RANK");
    std::string target = spec.substr(at + 1);
    spec = spec.substr(0, at);
    if (!rank || target != rank) return {};
  }
  try {
    return parse_fault(spec);
  } catch (const std::exception& e) {
    log::warn("ignoring RINGLINK_SOFT_VERBS_FAULT: {}", e.what());
    return {};
  }
}

void set_fault(ibv_context* context, Fault fault) {
  Context* c = of(context);
  std::lock_guard lk(c->mu);
  c->fault = fault;
  c->sends_posted = c->writes_posted = 0;
}

uint16_t context_lid(ibv_context* context) { return of(context)->lid; }

}  // namespace ringlink::verbs::soft

namespace ringlink::verbs {
const VerbsApi& soft_verbs() {
  static const VerbsApi table = soft::make_table();
  return table;
}
}  // namespace ringlink::verbs
