// The software verbs' queue pairs: RC only, no shared receive queue, capacities within the
// device's limits, and the state machine of the verbs specification, with the attributes each
// transition requires and allows (transition_rules) and the values an HCA refuses. INIT -> RTR
// connects the requester stream to the destination; RESET discards everything without
// completions; ERR flushes.
#include <algorithm>
#include <cerrno>

#include "transport/verbs/soft/entry_points.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {
namespace {

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

}  // namespace

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
  std::unique_lock lk(c->mu);
  if (!retire_events_of(c, lk, q)) return EBUSY;
  c->qps.erase(q->qp_num);
  qp->out.reset();
  qp->in.reset();
  --qp->pd->users;
  --qp->scq->users;
  --qp->rcq->users;
  delete qp;
  return 0;
}

}  // namespace ringlink::verbs::soft
