#include "transport/verbs/queue_pair.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "ringlink/error.h"
#include "transport/verbs/devices.h"

namespace ringlink::verbs {
namespace {

constexpr uint8_t kMinRnrTimer = 12;  // 0.64 ms; receives are pre-posted, so RNR never happens by design
constexpr uint8_t kRnrRetryForever = 7;

[[noreturn]] void fail(const QpErrorSite& site, std::string detail) {
  throw TransportError(site.rank, site.peer, site.operation, std::move(detail));
}

}  // namespace

ibv_qp* create_qp(const Device& device, const QpSettings& settings, uint32_t max_recv, uint32_t* max_inline,
                  const QpErrorSite& site) {
  const VerbsApi& api = device.api;
  ibv_qp_init_attr a{};
  a.send_cq = device.cq;
  a.recv_cq = device.cq;
  a.qp_type = IBV_QPT_RC;
  a.cap.max_send_wr = kSqDepth;
  a.cap.max_recv_wr = max_recv;
  a.cap.max_send_sge = 1;
  a.cap.max_recv_sge = 1;
  ibv_qp* qp = nullptr;
  for (uint32_t want : {*max_inline, 64u, 0u}) {
    if (want > *max_inline) continue;
    a.cap.max_inline_data = want;
    qp = api.create_qp(device.pd, &a);
    if (qp || want == 0) break;
  }
  if (!qp) fail(site, fmt::format("ibv_create_qp failed: {}", std::strerror(errno)));
  *max_inline = a.cap.max_inline_data;
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = settings.port_num;
  attr.qp_access_flags = kAccess;
  if (int rc = api.modify_qp(qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) {
    const uint32_t qpn = qp->qp_num;
    api.destroy_qp(qp);
    fail(site, fmt::format("moving QP {:#x} to INIT failed: {}", qpn, std::strerror(rc)));
  }
  return qp;
}

void connect_qp(const Device& device, ibv_qp* qp, const QpSettings& settings, const QpPeer& peer,
                const QpErrorSite& site) {
  const VerbsApi& api = device.api;
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = peer.mtu;
  a.dest_qp_num = peer.qpn;
  a.rq_psn = 0;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = kMinRnrTimer;
  a.ah_attr.dlid = peer.lid;
  a.ah_attr.port_num = settings.port_num;
  if (settings.global) {
    a.ah_attr.is_global = 1;
    a.ah_attr.grh.dgid = peer.gid;
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(std::max(0, settings.gid_index));
    a.ah_attr.grh.hop_limit = 255;
  }
  int rc = api.modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  if (rc)
    fail(site, fmt::format("moving QP {:#x} to RTR (remote QP {:#x}, LID {:#x}, MTU {}) failed: {}", qp->qp_num,
                           peer.qpn, peer.lid, mtu_bytes(peer.mtu), std::strerror(rc)));
  a = {};
  a.qp_state = IBV_QPS_RTS;
  a.timeout = settings.timeout;
  a.retry_cnt = settings.retry_cnt;
  a.rnr_retry = kRnrRetryForever;
  a.sq_psn = 0;
  a.max_rd_atomic = 1;
  rc = api.modify_qp(qp, &a,
                     IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                         IBV_QP_MAX_QP_RD_ATOMIC);
  if (rc) fail(site, fmt::format("moving QP {:#x} to RTS failed: {}", qp->qp_num, std::strerror(rc)));
}

bool SendQueue::count(bool wanted) {
  ++posted_;
  const bool signal = wanted || posted_ - last_signaled_ >= kSqDepth / 2;
  if (signal) {
    signaled_.push_back(posted_);
    last_signaled_ = posted_;
  }
  return signal;
}

void SendQueue::retire() {
  if (signaled_.empty()) return;
  retired_ = signaled_.front();
  signaled_.pop_front();
}

}  // namespace ringlink::verbs
