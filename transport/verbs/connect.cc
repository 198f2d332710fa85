// Connection establishment: the endpoint a link publishes through the store (its QPs, port
// address and control memory), the checks a peer's endpoint must pass, and bringing the QPs up.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/log.h"
#include "ringlink/error.h"
#include "transport/verbs/devices.h"
#include "transport/verbs/endpoint.h"
#include "transport/verbs/link.h"
#include "transport/verbs/verbs_transport_impl.h"

namespace ringlink::verbs {

std::vector<std::byte> Link::local_info() const {
  Endpoint e;
  e.rank = rank_;
  e.peer = peer_;
  e.fifo_depth = depth_;
  e.eager_slots = wire::kEagerSlots;
  e.lid = t_.port_attr().lid;
  e.ethernet = t_.ethernet();
  e.mtu = static_cast<uint8_t>(t_.port_attr().active_mtu);
  std::memcpy(e.gid, t_.gid().raw, 16);
  e.gid_index = t_.gid_index();
  e.fifo_addr = reinterpret_cast<uint64_t>(fifo_in_);
  e.fifo_rkey = ctrl_mr_->rkey;
  e.sizes_addr = reinterpret_cast<uint64_t>(sizes_in_);
  e.sizes_rkey = ctrl_mr_->rkey;
  e.credits_addr = reinterpret_cast<uint64_t>(credits_in_);
  e.qpns = qpns_;
  return encode_endpoint(e);
}

void Link::connect(std::span<const std::byte> remote) {
  const ParsedEndpoint parsed = parse_endpoint(remote);
  if (!parsed.ok) throw_refused_endpoint(rank_, peer_, "verbs", parsed.kind, parsed.why);
  const Endpoint& h = parsed.endpoint;
  require_endpoint_for(rank_, peer_, h.rank, h.peer);
  const size_t nqps = h.qpns.size() - 1;
  if (nqps != qps_.size())
    throw MismatchError(rank_, peer_, "connect",
                        fmt::format("RINGLINK_IB_QPS differs: {} here, {} on rank {}", qps_.size(), nqps, peer_));
  if (h.fifo_depth != depth_ || h.eager_slots != wire::kEagerSlots)
    throw MismatchError(rank_, peer_, "connect", fmt::format("rank {} runs an incompatible verbs transport", peer_));
  if (h.ethernet != t_.ethernet())
    throw MismatchError(rank_, peer_, "connect",
                        fmt::format("link layers differ: {} here, {} on rank {}", t_.ethernet() ? "Ethernet" : "InfiniBand",
                                    h.ethernet ? "Ethernet" : "InfiniBand", peer_));
  const std::vector<uint32_t>& remote_qpns = h.qpns;
  remote_fifo_ = h.fifo_addr;
  remote_fifo_rkey_ = h.fifo_rkey;
  remote_sizes_ = h.sizes_addr;
  remote_sizes_rkey_ = h.sizes_rkey;
  remote_credits_ = h.credits_addr;
  QpPeer qp_peer;
  qp_peer.lid = h.lid;
  std::memcpy(qp_peer.gid.raw, h.gid, 16);
  qp_peer.mtu = static_cast<ibv_mtu>(std::min<int>(t_.port_attr().active_mtu, h.mtu));
  const QpErrorSite site{rank_, peer_, "connect"};
  for (size_t i = 0; i < qps_.size(); ++i) {
    qp_peer.qpn = remote_qpns[i];
    connect_qp(*dev_, qps_[i].qp, t_.qp_settings(), qp_peer, site);
    // Every WRITE WITH IMM consumes one receive; at most `depth_` can be outstanding per QP.
    post_receives(static_cast<uint32_t>(i), depth_);
  }
  qp_peer.qpn = remote_qpns.back();
  connect_qp(*dev_, control_.qp, t_.qp_settings(), qp_peer, site);
  for (uint32_t i = 0; i < wire::kEagerSlots; ++i) post_eager_receive(i);
  connected_ = true;
  log::trace("verbs: connected to rank {} over {} QP(s), path MTU {}, {}", peer_, qps_.size(), mtu_bytes(qp_peer.mtu),
             t_.qp_settings().global ? "GID routed" : fmt::format("LID {:#x}", h.lid));
}

}  // namespace ringlink::verbs
