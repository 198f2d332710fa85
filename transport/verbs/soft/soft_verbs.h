// Software verbs: a test double of the verbs subset the transport uses, so CI (which has no
// RDMA device) runs the verbs transport unchanged. It is not RDMA: bytes move between
// processes over loopback TCP. What it does keep is the behaviour an HCA enforces:
//
//  - one device "soft", port 1, InfiniBand link layer; a context's LID is the loopback TCP port
//    it listens on, so the LID + QPN exchanged through the store address a remote QP;
//  - protection domains; memory regions with lkey/rkey and access flags; a remote access with a
//    wrong key, outside the region, or without the right is a remote access error;
//  - RC queue pairs with the RESET -> INIT -> RTR -> RTS state machine and its required attribute
//    masks; posting on a QP in the wrong state fails with EINVAL; an error moves the QP to ERR
//    and flushes its outstanding and later work requests (IBV_WC_WR_FLUSH_ERR);
//  - RDMA WRITE, RDMA WRITE WITH IMM (consumes a posted receive; none posted: receiver not ready,
//    bounded by the requester's rnr_retry), SEND, RDMA READ, inline data, signalled and
//    unsignalled completions, completions in order per QP;
//  - a vanished peer (the socket closes) fails outstanding and later sends with
//    IBV_WC_RETRY_EXC_ERR at once, rather than after the retry timeout a real HCA waits;
//  - asynchronous events (QP access error, port down) through the context's async_fd.
//
// A service thread per context plays the HCA's DMA engine: it moves posted work onto the
// sockets and applies incoming writes to registered memory without the application's help.
// CUDA memory registered with reg_dmabuf_mr (iova = the device address) is reached through the
// CUDA driver's copies, which lets the GPUDirect code paths run where a GPU but no HCA exists.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <string>

namespace ringlink::verbs::soft {

// ibv_wc::vendor_err values: which rule a failed work request broke.
enum VendorError : uint32_t {
  kVendorNone = 0,
  kVendorBadKey = 0x5001,          // no region with that key in the QP's protection domain
  kVendorOutOfBounds = 0x5002,     // the access falls outside the region
  kVendorAccessDenied = 0x5003,    // the region lacks the access right (remote write / read)
  kVendorPeerGone = 0x5004,        // the remote end closed: retries would be exhausted
  kVendorReceiverNotReady = 0x5005,
  kVendorLength = 0x5006,          // a SEND longer than the posted receive
  kVendorLocalProtection = 0x5007, // a local scatter/gather entry with a bad lkey or range
};
const char* vendor_error_text(uint32_t vendor_err);

// Fault injection, for tests. The verbs transport arms Options::soft_verbs_fault
// (RINGLINK_SOFT_VERBS_FAULT=KIND[:N][@RANK]) in the context it opens, when RANK, if given, is
// the transport's rank:
//   drop-peer:N   on the N-th posted send work request, every connection of the context breaks,
//                 as if the peers vanished (outstanding sends: IBV_WC_RETRY_EXC_ERR)
//   bad-rkey:N    the N-th RDMA WRITE with data goes out with a wrong rkey
//   oob-write:N   the N-th RDMA WRITE with data targets an address past its region
//   port-down:N   like drop-peer, and the port goes down with an IBV_EVENT_PORT_ERR event
// N defaults to 1.
struct Fault {
  enum class Kind { None, DropPeer, BadRkey, OobWrite, PortDown };
  Kind kind = Kind::None;
  uint64_t after = 1;
};
// Parses "bad-rkey:3" (no @RANK part); throws std::invalid_argument on anything else.
Fault parse_fault(const std::string& spec);
// Parses "KIND[:N][@RANK]" for `rank`: Kind::None when it targets another rank. Throws
// std::invalid_argument when KIND[:N] is malformed.
Fault fault_for_rank(const std::string& spec, int rank);
// Arms `fault` on an open soft context, replacing the one armed before; counting starts anew.
void set_fault(ibv_context* context, Fault fault);

// The TCP port (= LID) a soft context listens on.
uint16_t context_lid(ibv_context* context);

}  // namespace ringlink::verbs::soft
