// Posting work, polling completions and reading asynchronous events, as an HCA accepts them:
//  - a send work request needs a QP in RTS (in ERR it is accepted and flushed at once), a known
//    opcode, no more scatter entries than the QP was created with, room in the send queue
//    (ENOMEM otherwise) and at most kMaxMessage bytes; inline data fits the QP's inline limit,
//    is copied at post time and needs no registration, and never goes with an RDMA READ;
//  - a receive needs a QP out of RESET (in ERR it is flushed at once) and room in the receive
//    queue;
//  - a CQ returns its entries oldest first; an async event is read once.
#include <cerrno>
#include <cstring>

#include "transport/verbs/soft/entry_points.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {

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
  if (const void* object = event_object(*event)) ++c->unacked_events[object];
  return 0;
}

void ack_async_event(ibv_async_event* event) {
  const void* object = event_object(*event);
  if (!object) return;
  Context* c = event->event_type == IBV_EVENT_CQ_ERR ? of(event->element.cq)->ctx : of(event->element.qp)->ctx;
  std::lock_guard lk(c->mu);
  auto it = c->unacked_events.find(object);
  if (it == c->unacked_events.end()) return;
  if (--it->second == 0) c->unacked_events.erase(it);
  c->events_acked.notify_all();
}

}  // namespace ringlink::verbs::soft
