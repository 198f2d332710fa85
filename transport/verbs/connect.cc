// Connection establishment: the endpoint a link publishes through the store (its QPs, port
// address and control memory), the checks a peer's endpoint must pass, and bringing the QPs up.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/log.h"
#include "ringlink/error.h"
#include "transport/verbs/devices.h"
#include "transport/verbs/link.h"
#include "transport/verbs/verbs_transport_impl.h"

namespace ringlink::verbs {
namespace {

constexpr uint32_t kEndpointMagic = 0x31425652;  // "RVB1"
constexpr uint16_t kEndpointVersion = 2;

// Followed by the QP numbers: the data QPs, then the control QP.
struct EndpointHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t nqps;
  uint32_t fifo_depth;
  uint16_t lid;
  uint8_t ethernet;
  uint8_t mtu;  // enum ibv_mtu
  uint8_t gid[16];
  int32_t gid_index;
  uint32_t fifo_rkey;
  uint64_t fifo_addr;
  uint64_t sizes_addr;
  uint32_t sizes_rkey;
  uint32_t eager_slots;
  uint64_t credits_addr;
};
static_assert(sizeof(EndpointHeader) == 72);

}  // namespace

std::vector<std::byte> Link::local_info() const {
  EndpointHeader h{};
  h.magic = kEndpointMagic;
  h.version = kEndpointVersion;
  h.nqps = static_cast<uint16_t>(qps_.size());
  h.fifo_depth = depth_;
  h.lid = t_.port_attr().lid;
  h.ethernet = t_.ethernet() ? 1 : 0;
  h.mtu = static_cast<uint8_t>(t_.port_attr().active_mtu);
  std::memcpy(h.gid, t_.gid().raw, 16);
  h.gid_index = t_.gid_index();
  h.fifo_addr = reinterpret_cast<uint64_t>(fifo_in_);
  h.fifo_rkey = ctrl_mr_->rkey;
  h.sizes_addr = reinterpret_cast<uint64_t>(sizes_in_);
  h.sizes_rkey = ctrl_mr_->rkey;
  h.eager_slots = wire::kEagerSlots;
  h.credits_addr = reinterpret_cast<uint64_t>(credits_in_);
  std::vector<std::byte> out(sizeof h + qpns_.size() * sizeof(uint32_t));
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, qpns_.data(), qpns_.size() * sizeof(uint32_t));
  return out;
}

void Link::connect(std::span<const std::byte> remote) {
  EndpointHeader h{};
  if (remote.size() < sizeof h)
    throw MismatchError(rank_, peer_, "connect",
                        fmt::format("rank {} published a {}-byte address, not a verbs endpoint (is RINGLINK_TRANSPORT "
                                    "the same on every rank?)",
                                    peer_, remote.size()));
  std::memcpy(&h, remote.data(), sizeof h);
  if (h.magic != kEndpointMagic || h.version != kEndpointVersion)
    throw MismatchError(rank_, peer_, "connect",
                        fmt::format("rank {} uses another transport or ringlink version (is RINGLINK_TRANSPORT the "
                                    "same on every rank?)",
                                    peer_));
  if (h.nqps != qps_.size())
    throw MismatchError(rank_, peer_, "connect",
                        fmt::format("RINGLINK_IB_QPS differs: {} here, {} on rank {}", qps_.size(), h.nqps, peer_));
  // h.nqps (checked above) sizes what is read next: the endpoint holds exactly that many QPs.
  if (h.fifo_depth != depth_ || h.eager_slots != wire::kEagerSlots ||
      remote.size() != sizeof h + (h.nqps + 1u) * sizeof(uint32_t))
    throw MismatchError(rank_, peer_, "connect", fmt::format("rank {} runs an incompatible verbs transport", peer_));
  if (static_cast<bool>(h.ethernet) != t_.ethernet())
    throw MismatchError(rank_, peer_, "connect",
                        fmt::format("link layers differ: {} here, {} on rank {}", t_.ethernet() ? "Ethernet" : "InfiniBand",
                                    h.ethernet ? "Ethernet" : "InfiniBand", peer_));
  std::vector<uint32_t> remote_qpns(h.nqps + 1u);
  std::memcpy(remote_qpns.data(), remote.data() + sizeof h, remote_qpns.size() * sizeof(uint32_t));
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
