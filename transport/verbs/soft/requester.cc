// The requester side of a soft QP: posted send work requests onto the wire in order, and the
// responder's answers turned into completions. The rules it keeps, as an RC requester does:
//  - requests go out in posting order, numbered by a packet sequence number (psn); they
//    complete in that order, when the responder acknowledges them (an ACK of psn N acknowledges
//    everything up to N);
//  - a request whose local memory fails its checks completes with IBV_WC_LOC_PROT_ERR once
//    everything before it has completed, and nothing after it goes out;
//  - a NAK fails its request with the status the responder names and moves the QP to the error
//    state (the rest flushes);
//  - an RDMA READ completes when its response has been written into local memory;
//  - a responder that cannot be reached (no listener, or the socket closes) exhausts the
//    retries: IBV_WC_RETRY_EXC_ERR, at once rather than after the retry timeout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>

#include "transport/verbs/soft/hca.h"

#include "common/log.h"

namespace ringlink::verbs::soft {
namespace {

// Requests the responder answered (or that failed locally) leave the front in order.
void complete_through(Qp* qp, uint64_t psn) {
  while (!qp->inflight.empty() && qp->inflight.front().psn <= psn) {
    SendWr& wr = qp->inflight.front();
    if (wr.local_error != IBV_WC_SUCCESS) break;
    complete_send(qp, wr, IBV_WC_SUCCESS, 0);
    qp->inflight.pop_front();
  }
  if (!qp->inflight.empty() && qp->inflight.front().local_error != IBV_WC_SUCCESS) {
    // Everything before it has completed: its own error is next.
    fail_requester(qp, qp->inflight.front().local_error, kVendorLocalProtection);
  }
}

// A request failed its local checks: it waits in line for its error completion.
void block_on_local_error(Qp* qp, SendWr wr) {
  wr.local_error = IBV_WC_LOC_PROT_ERR;
  qp->sq_blocked = true;
  qp->inflight.push_back(std::move(wr));
  if (qp->inflight.size() == 1) complete_through(qp, qp->inflight.front().psn - 1);
}

WireOp wire_op(ibv_wr_opcode opcode) {
  switch (opcode) {
    case IBV_WR_RDMA_WRITE_WITH_IMM: return WireOp::WriteImm;
    case IBV_WR_SEND: return WireOp::Send;
    case IBV_WR_SEND_WITH_IMM: return WireOp::SendImm;
    case IBV_WR_RDMA_READ: return WireOp::ReadReq;
    default: return WireOp::Write;
  }
}

}  // namespace

// The oldest outstanding send fails with `status`; the rest are flushed.
void fail_requester(Qp* qp, ibv_wc_status status, uint32_t vendor) {
  if (!qp->inflight.empty()) {
    complete_send(qp, qp->inflight.front(), status, vendor);
    qp->inflight.pop_front();
  } else if (!qp->sq.empty()) {
    complete_send(qp, qp->sq.front(), status, vendor);
    qp->sq.pop_front();
  }
  qp_to_error(qp);
}

void peer_gone(Qp* qp) {
  qp->out.reset();
  qp->peer_gone = true;
  if (qp->state == IBV_QPS_RTS && (!qp->inflight.empty() || !qp->sq.empty()))
    fail_requester(qp, IBV_WC_RETRY_EXC_ERR, kVendorPeerGone);
}

// Opens the requester stream to the destination QP (at RTR: its LID is a loopback port). The
// hello names both ends, as an RC packet's headers name the destination QP.
void connect_requester(Context* c, Qp* qp) {
  qp->out.reset();
  qp->peer_gone = false;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // A GID-addressed QP whose GID is IPv4-mapped (GID 1) lives on another host.
  const uint8_t* dgid = qp->ah.grh.dgid.raw;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (qp->ah.is_global && std::memcmp(dgid, kMapped, sizeof kMapped) == 0) std::memcpy(&a.sin_addr, dgid + 12, 4);
  a.sin_port = htons(qp->dlid);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    qp->peer_gone = true;  // nobody there: sends will exhaust their retries
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  qp->out.fd = fd;
  TxFrame& hello = queue_frame(qp->out, WireOp::Hello, 0);
  hello.hdr.addr = c->lid;
  hello.hdr.rkey = qp->h.verbs.qp_num;
  hello.hdr.length = qp->dest_qpn;
  wake(c);
}

// Moves posted work requests onto the requester stream.
void start_sends(Context* c, Qp* qp) {
  while (!qp->sq.empty() && !qp->sq_blocked) {
    if (qp->peer_gone || qp->out.fd < 0) {
      fail_requester(qp, IBV_WC_RETRY_EXC_ERR, kVendorPeerGone);
      return;
    }
    SendWr wr = std::move(qp->sq.front());
    qp->sq.pop_front();
    wr.psn = qp->next_psn++;
    std::vector<Segment> local;
    const bool is_read = wr.opcode == IBV_WR_RDMA_READ;
    // The local memory is checked when the HCA reads it (inline data was copied at post time);
    // a READ's target must allow local write.
    if (!wr.inlined && !resolve_local(c, qp, wr.sge, is_read, local)) {
      block_on_local_error(qp, std::move(wr));
      return;
    }
    TxFrame& f = queue_frame(qp->out, wire_op(wr.opcode), wr.psn);
    f.hdr.imm = wr.imm;
    f.hdr.status = qp->rnr_retry;
    f.hdr.addr = wr.remote_addr;
    f.hdr.rkey = wr.rkey;
    f.hdr.length = wr.length;
    if (is_read) {
      wr.local = std::move(local);
    } else if (wr.inlined) {
      f.owned = std::move(wr.inline_data);
      f.total = f.owned.size();
      if (f.total) f.payload.push_back({f.owned.data(), f.total, 0, nullptr});
    } else {
      f.payload = std::move(local);
      f.total = wr.length;
      if (!stage_device_payload(f)) {
        qp->out.tx.pop_back();
        block_on_local_error(qp, std::move(wr));
        return;
      }
    }
    qp->inflight.push_back(std::move(wr));
  }
}

// Handles the answers on the requester stream. Blocked: wait for more bytes.
Io read_responses(Context* c, Qp* qp, size_t& budget) {
  Stream& s = qp->out;
  for (;;) {
    if (!s.have_header) {
      Io r = next_header(s, Direction::Answers);
      if (r != Io::Done) return r;
      const WireHeader& h = s.hdr;
      set_sink(s, {}, 0);
      if (qp->state != IBV_QPS_RTS) {
        // Answers to a QP in error are dropped (its work has been flushed).
        if (op_of(h) == WireOp::ReadResp) s.payload_left = h.length;
      } else if (op_of(h) == WireOp::Ack) {
        complete_through(qp, h.psn);
      } else if (op_of(h) == WireOp::Nak) {
        complete_through(qp, h.psn - 1);
        if (!qp->inflight.empty() && qp->inflight.front().psn == h.psn)
          fail_requester(qp, static_cast<ibv_wc_status>(h.status), h.vendor);
        else
          qp_to_error(qp);
      } else if (op_of(h) == WireOp::ReadResp) {
        complete_through(qp, h.psn - 1);
        if (qp->state == IBV_QPS_RTS && !qp->inflight.empty() && qp->inflight.front().psn == h.psn &&
            qp->inflight.front().opcode == IBV_WR_RDMA_READ) {
          // The answer to a READ is as long as the READ: more would not fit where it goes.
          if (h.length != qp->inflight.front().length) {
            log::warn("soft verbs: QP {:#x} got a {}-byte answer to a {}-byte READ", qp->h.verbs.qp_num, h.length,
                      qp->inflight.front().length);
            return Io::Closed;
          }
          set_sink(s, qp->inflight.front().local, h.length);
        } else {
          s.payload_left = h.length;
        }
      }
    }
    Io r = pump_payload(c, s, budget);
    if (r != Io::Done) return r;
    if (op_of(s.hdr) == WireOp::ReadResp && qp->state == IBV_QPS_RTS && !qp->inflight.empty() &&
        qp->inflight.front().psn == s.hdr.psn) {
      SendWr wr = std::move(qp->inflight.front());
      qp->inflight.pop_front();
      if (s.sink_broken) {  // the READ's local target was deregistered under it
        qp->inflight.push_front(std::move(wr));
        fail_requester(qp, IBV_WC_LOC_PROT_ERR, kVendorLocalProtection);
      } else {
        complete_send(qp, wr, IBV_WC_SUCCESS, 0);
        complete_through(qp, s.hdr.psn);
      }
    }
    s.have_header = false;
  }
}

}  // namespace ringlink::verbs::soft
