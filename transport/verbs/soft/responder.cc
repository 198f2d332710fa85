// The responder side of a soft QP: the peer's requests checked as an RC responder checks them,
// applied to memory, and answered.
//  - RDMA WRITE: the rkey names a region of this QP's protection domain that allows remote
//    write (and so does the QP), and the write lies inside it; a zero-length write touches no
//    memory and checks no key. Otherwise: a NAK with remote access error, IBV_EVENT_QP_ACCESS_ERR
//    here, and this QP enters the error state.
//  - WRITE WITH IMM and SEND consume the oldest posted receive. None posted: receiver not ready;
//    the request waits while the requester's RNR retries (rnr_retry, 7 = for ever) at this QP's
//    min_rnr_timer would last, then fails with IBV_WC_RNR_RETRY_EXC_ERR.
//  - SEND lands in the receive's scatter list: a bad lkey there is a local protection error of
//    the receive (remote operation error for the requester), a message longer than the list a
//    local length error (remote invalid request for the requester); both raise
//    IBV_EVENT_QP_REQ_ERR and move this QP to the error state.
//  - RDMA READ: the rkey names a region that allows remote read; the response carries its bytes.
//  - A region deregistered while a payload streams in is an access error.
//  - Answers leave in request order; ACKs are coalesced (one names every request up to it).
#include "transport/verbs/soft/hca.h"

#include "common/log.h"

namespace ringlink::verbs::soft {
namespace {

// The RNR NAK timer table of the InfiniBand specification (min_rnr_timer codes, ms).
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
  TxFrame& f = queue_frame(qp->in, WireOp::Nak, psn);
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
      TxFrame& f = queue_frame(qp->in, WireOp::Nak, s.hdr.psn);
      f.hdr.status = IBV_WC_RNR_RETRY_EXC_ERR;
      f.hdr.vendor = kVendorReceiverNotReady;
      qp->in_discard = true;  // the requester is in error now: the rest of its stream is void
      return true;
    }
  }
  return false;
}

// Checks a new request and points the stream's sink at its target (s.applies), or rejects it.
void accept_request(Context* c, Qp* qp, const WireHeader& h, WireOp op) {
  Stream& s = qp->in;
  if (op == WireOp::Write || op == WireOp::WriteImm) {
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
  } else if (op == WireOp::Send || op == WireOp::SendImm) {
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
  } else if (op == WireOp::ReadReq) {
    Segment seg;
    uint32_t v =
        h.length == 0 ? kVendorNone : check_remote(c, qp, h.addr, h.length, h.rkey, IBV_ACCESS_REMOTE_READ, seg);
    if (v != kVendorNone) {
      responder_error(qp, h.psn, IBV_WC_REM_ACCESS_ERR, v, IBV_EVENT_QP_ACCESS_ERR);
      return;
    }
    flush_ack(qp);  // answers leave in request order
    TxFrame& f = queue_frame(qp->in, WireOp::ReadResp, h.psn);
    f.hdr.length = h.length;
    f.total = h.length;
    if (h.length) f.payload.push_back(seg);
    if (!stage_device_payload(f)) {
      qp->in.tx.pop_back();
      responder_error(qp, h.psn, IBV_WC_REM_ACCESS_ERR, kVendorAccessDenied, IBV_EVENT_QP_ACCESS_ERR);
    }
  }
}

}  // namespace

void flush_ack(Qp* qp) {
  if (!qp->ack_pending || qp->in.fd < 0) return;
  queue_frame(qp->in, WireOp::Ack, qp->ack_psn);
  qp->ack_pending = false;
}

// Handles the peer's requests on the responder stream.
Io read_requests(Context* c, Qp* qp, size_t& budget) {
  Stream& s = qp->in;
  for (;;) {
    if (!s.have_header) {
      Io r = next_header(s, Direction::Requests);
      if (r != Io::Done) return r;
      s.started = false;
    }
    const WireHeader h = s.hdr;
    const WireOp op = op_of(h);
    const bool has_payload = op == WireOp::Write || op == WireOp::WriteImm || op == WireOp::Send || op == WireOp::SendImm;
    const bool needs_recv = op == WireOp::WriteImm || op == WireOp::Send || op == WireOp::SendImm;
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
      const uint32_t* imm = op == WireOp::Send ? nullptr : &h.imm;
      complete_recv(qp, w, IBV_WC_SUCCESS, op == WireOp::WriteImm ? IBV_WC_RECV_RDMA_WITH_IMM : IBV_WC_RECV,
                    static_cast<uint32_t>(h.length), imm);
    }
    qp->ack_pending = true;
    qp->ack_psn = h.psn;
  }
}

}  // namespace ringlink::verbs::soft
