// RC queue pairs: created on the transport's CQ and moved RESET -> INIT -> RTR -> RTS in one
// way for every QP (a link's data and control QPs, and the GPUDirect flush QP, which is
// connected to itself); and the accounting of a send queue's work requests.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <deque>

#include "transport/verbs/device.h"

namespace ringlink::verbs {

inline constexpr uint32_t kSqDepth = 512;  // send queue entries per QP

// How this rank's QPs are addressed and retry: the same for every QP of a transport.
struct QpSettings {
  uint8_t port_num = 1;
  int gid_index = -1;     // the source GID of a global route; -1: LID addressing only
  bool global = false;    // routed by GID (RoCE, or InfiniBand with a GID index)
  uint8_t timeout = 18;   // RINGLINK_IB_TIMEOUT: 4.096 us * 2^timeout per retry
  uint8_t retry_cnt = 7;  // RINGLINK_IB_RETRY_CNT
};

// The remote end of a QP.
struct QpPeer {
  uint32_t qpn = 0;
  uint16_t lid = 0;
  ibv_gid gid{};
  ibv_mtu mtu = IBV_MTU_1024;  // the path MTU: the smaller of both ports'
};

// Whom a failed QP step names: TransportError(rank, peer, operation, ...).
struct QpErrorSite {
  int rank;
  int peer;
  const char* operation;
};

// An RC QP on `device`'s CQ (for both queues), moved to INIT. `max_inline`: the inline room
// wanted on the way in (devices that offer less are asked for 64 bytes, then none), the room
// granted on the way out.
ibv_qp* create_qp(const Device& device, const QpSettings& settings, uint32_t max_recv, uint32_t* max_inline,
                  const QpErrorSite& site);

// INIT -> RTR -> RTS, connected to `peer`.
void connect_qp(const Device& device, ibv_qp* qp, const QpSettings& settings, const QpPeer& peer,
                const QpErrorSite& site);

// A send queue's accounting. An unsignalled work request leaves the queue only when a later
// signalled one completes, so at least every half queue one is signalled: the queue never fills
// with requests whose completion nobody will see.
class SendQueue {
 public:
  ibv_qp* qp = nullptr;

  uint32_t room() const { return kSqDepth - static_cast<uint32_t>(posted_ - retired_); }
  bool busy() const { return qp && posted_ != retired_; }
  // Counts a work request as posted; true when it must be signalled (`wanted`, or the half queue).
  bool count(bool wanted);
  // The oldest signalled work request completed: it and everything before it left the queue.
  void retire();

 private:
  uint64_t posted_ = 0, retired_ = 0, last_signaled_ = 0;
  std::deque<uint64_t> signaled_;  // the `posted_` count of each signalled request not yet completed
};

}  // namespace ringlink::verbs
