// Completions and the error state, as an RC HCA reports them:
//  - a successful send work request completes only when it was signalled (or the QP signals
//    all); an error completes whether signalled or not;
//  - a receive completes with the bytes that arrived and, for WRITE WITH IMM or SEND WITH IMM,
//    the immediate;
//  - a CQ that is full loses the entry and raises IBV_EVENT_CQ_ERR once;
//  - a QP in the error state completes everything outstanding, and everything posted later,
//    with IBV_WC_WR_FLUSH_ERR;
//  - a QP or CQ that an asynchronous event names outlives the event's acknowledgement.
#include <cstdint>

#include "transport/verbs/async_event_kinds.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {
namespace {

ibv_wc_opcode wc_opcode(ibv_wr_opcode op) {
  switch (op) {
    case IBV_WR_RDMA_WRITE:
    case IBV_WR_RDMA_WRITE_WITH_IMM: return IBV_WC_RDMA_WRITE;
    case IBV_WR_RDMA_READ: return IBV_WC_RDMA_READ;
    default: return IBV_WC_SEND;
  }
}

}  // namespace

void push_async(Context* c, ibv_async_event ev) {
  c->async_events.push_back(ev);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(c->async_fd, &one, sizeof one);
}

const void* event_object(const ibv_async_event& ev) {
  if (event_names_qp(ev.event_type)) return ev.element.qp;
  if (ev.event_type == IBV_EVENT_CQ_ERR) return ev.element.cq;
  return nullptr;
}

bool retire_events_of(Context* c, std::unique_lock<std::mutex>& lk, const void* object) {
  std::erase_if(c->async_events, [&](const ibv_async_event& ev) { return event_object(ev) == object; });
  // Bounded: the reader acknowledges what it took at once; an event never acknowledged is a
  // caller's bug, answered with EBUSY (the object stays) rather than a use after free.
  return c->events_acked.wait_for(lk, kEventAckPatience, [&] { return !c->unacked_events.count(object); });
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
                   const uint32_t* imm, uint32_t vendor) {
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
  qp->in_discard = true;  // the responder drops what the peer still sends
  qp->ack_pending = false;
  qp->in.parked = false;
}

}  // namespace ringlink::verbs::soft
