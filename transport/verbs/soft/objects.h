// The software verbs' objects: context, protection domain, memory region, completion queue and
// queue pair, with the work requests, frames and streams a QP moves, and the limits the device
// reports and enforces.
//
// Locking: a context's mutex guards its objects and queues. The service thread (service.cc)
// holds it for a whole round of work (bounded by kBudgetPerStream bytes per socket) and drops it
// only while it sleeps in poll(); so an application thread that deregisters memory or destroys a
// QP knows that no "DMA" is in progress once it holds the lock. Each CQ has its own mutex so
// polling never waits for a round.
#pragma once

#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/cuda_driver.h"
#include "transport/verbs/soft/soft_verbs.h"
#include "transport/verbs/soft/wire_format.h"

namespace ringlink::verbs::soft {

using Clock = std::chrono::steady_clock;

// Device limits (query_device / query_port report them; the entry points refuse more), with
// kMaxMessage (wire_format.h), which also bounds a frame.
inline constexpr uint32_t kMaxInline = 512;
inline constexpr uint32_t kMaxQpWr = 16384;
inline constexpr uint32_t kMaxSge = 16;
inline constexpr int kMaxCqe = 1 << 22;
inline constexpr uint64_t kMaxMrSize = uint64_t{1} << 40;

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
  bool gpu = false;  // CUDA memory registered through dma-buf: reached with driver copies
  cuda::CUcontext cuda_ctx = nullptr;
  uint32_t key = 0;  // lkey and rkey alike
};

struct Cq {
  CqHandle h{};
  Context* ctx = nullptr;
  std::mutex mu;
  std::deque<ibv_wc> entries;
  size_t capacity = 0;
  bool overflowed = false;
  int users = 0;  // QPs
};

// A piece of memory a payload comes from or goes to.
struct Segment {
  std::byte* ptr = nullptr;
  size_t len = 0;
  uint32_t key = 0;                    // the region it lies in (0: memory the soft verbs own)
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
  std::vector<Segment> local;                  // resolved local memory (RDMA READ: where the answer goes)
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

// One direction pair of a QP's connection: a socket, what is read from it, what waits to go.
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

// An accepted socket whose hello (naming the target QP) has not been read, or whose QP is not
// ready yet.
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
  uint16_t lid = 0;  // the loopback TCP port it listens on
  // Peers on other hosts (network namespaces in the tests) reach GID 1: this host's first
  // IPv4 address that is not loopback, listened on at the same port as loopback. -1: none.
  int host_listen_fd = -1;
  in_addr host_addr{};
  int wake_fd = -1;
  std::atomic<bool> wake_pending{false};
  int async_fd = -1;
  std::deque<ibv_async_event> async_events;
  // Events handed out by get_async_event and not yet acknowledged, by the QP or CQ they name:
  // as libibverbs, destroying that object waits for their acknowledgement.
  std::unordered_map<const void*, int> unacked_events;
  std::condition_variable events_acked;
  std::thread service;
  std::atomic<bool> stop{false};
  bool more_work = false;  // a round left work behind: do not sleep
  std::unordered_map<uint32_t, Mr*> mrs;  // by key
  std::unordered_map<uint32_t, Qp*> qps;  // by QPN
  std::vector<PendingSocket> pending;     // accepted, hello not yet read or target QP not ready
  uint32_t next_key = 0;
  uint32_t next_qpn = 0x100;
  // Fault injection (faults.cc).
  Fault fault;
  uint64_t sends_posted = 0, writes_posted = 0;
  bool drop_now = false;
  bool port_down = false;
};

inline Context* of(ibv_context* c) { return reinterpret_cast<ContextHandle*>(c)->self; }
inline Pd* of(ibv_pd* p) { return reinterpret_cast<PdHandle*>(p)->self; }
inline Mr* of(ibv_mr* m) { return reinterpret_cast<MrHandle*>(m)->self; }
inline Cq* of(ibv_cq* c) { return reinterpret_cast<CqHandle*>(c)->self; }
inline Qp* of(ibv_qp* q) { return reinterpret_cast<QpHandle*>(q)->self; }

}  // namespace ringlink::verbs::soft
