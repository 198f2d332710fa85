// Eager messages (wire.h): a small send with no clear-to-send yet goes as a SEND on the control
// QP into one of the receiver's kEagerSlots buffers, spending a credit; the receiver returns
// credits with its CTS entries or, when those are scarce, by an RDMA WRITE of its count.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/cuda_driver.h"
#include "transport/verbs/link.h"
#include "transport/verbs/verbs_transport_impl.h"
#include "transport/verbs/wire_checks.h"

namespace ringlink::verbs {

uint32_t Link::eager_credits() {
  // The credit word is the peer's to write: a count beyond what was sent would mint credits.
  const uint64_t released = __atomic_load_n(credits_in_, __ATOMIC_ACQUIRE);
  if (std::string why = wire::check_credits(released, eager_sent_); !why.empty()) {
    fail({ErrorKind::Transport, fmt::format("rank {} wrote a malformed credit count: {}", peer_, why)});
    return 0;
  }
  remote_released_ = std::max(remote_released_, released);
  return wire::kEagerSlots - static_cast<uint32_t>(eager_sent_ - remote_released_);
}

bool Link::post_eager(const std::shared_ptr<Op>& op) {
  if (failure_) return false;
  if (eager_credits() == 0 || control_.room() < 1) {
    credit_starved_ = true;
    return false;
  }
  const uint32_t index = static_cast<uint32_t>(eager_sent_ % wire::kEagerSlots);
  std::byte* slot = eager_out_ + index * wire::kEagerSlotBytes;
  wire::EagerHeader hdr{op->tag, op->msn, op->bytes, 0};
  std::memcpy(slot, &hdr, sizeof hdr);
  if (op->bytes) std::memcpy(slot + sizeof hdr, op->buf, op->bytes);
  const uint32_t len = static_cast<uint32_t>(sizeof hdr + op->bytes);
  ibv_sge sge{reinterpret_cast<uint64_t>(slot), len, ctrl_mr_->lkey};
  ibv_send_wr wr{};
  wr.wr_id = make_wr_id(WrKind::EagerSend, id_, 0, op->serial);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = (control_.count(false) ? IBV_SEND_SIGNALED : 0) | (len <= max_inline_ ? IBV_SEND_INLINE : 0);
  ibv_send_wr* bad = nullptr;
  if (int rc = api_.post_send(control_.qp, &wr, &bad)) {
    fail({ErrorKind::Transport,
          fmt::format("ibv_post_send (eager) on QP {:#x} to rank {} failed: {}", control_.qp->qp_num, peer_, std::strerror(rc))});
    return true;
  }
  ++eager_sent_;
  finish(op);  // the bytes are copied: the caller's buffer is free again
  return true;
}

// Tells the sender how many eager buffers are free again, when CTS entries have not.
void Link::return_credits(bool force) {
  if (eager_released_ == credits_returned_) return;
  if (!force && eager_released_ - credits_returned_ < wire::kEagerSlots / 4) return;
  if (control_.room() < 1) return;
  *credits_out_ = eager_released_;
  ibv_sge sge{reinterpret_cast<uint64_t>(credits_out_), 8, ctrl_mr_->lkey};
  ibv_send_wr wr{};
  wr.wr_id = make_wr_id(WrKind::Credit, id_, 0, 0);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.wr.rdma.remote_addr = remote_credits_;
  wr.wr.rdma.rkey = remote_fifo_rkey_;
  wr.send_flags = (control_.count(false) ? IBV_SEND_SIGNALED : 0) | (max_inline_ >= 8 ? IBV_SEND_INLINE : 0);
  ibv_send_wr* bad = nullptr;
  if (int rc = api_.post_send(control_.qp, &wr, &bad)) {
    fail({ErrorKind::Transport, fmt::format("ibv_post_send (credits) to rank {} failed: {}", peer_, std::strerror(rc))});
    return;
  }
  credits_returned_ = eager_released_;
}

void Link::post_eager_receive(uint32_t index) {
  ibv_sge sge{reinterpret_cast<uint64_t>(eager_in_ + index * wire::kEagerSlotBytes),
              static_cast<uint32_t>(wire::kEagerSlotBytes), ctrl_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = make_wr_id(WrKind::EagerRecv, id_, 0, index);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int rc = api_.post_recv(control_.qp, &wr, &bad))
    fail({ErrorKind::Transport, fmt::format("ibv_post_recv on QP {:#x} failed: {}", control_.qp->qp_num, std::strerror(rc))});
}

// An eager message landed in buffer `index`: hand it to its receive, or keep it until one is
// posted; the buffer goes straight back to the control QP. `bytes` is what the completion
// reports (the device bounds it by the buffer); the header inside is the peer's, checked.
void Link::on_eager(uint32_t index, uint32_t bytes) {
  const std::byte* slot = eager_in_ + index * wire::kEagerSlotBytes;
  wire::EagerHeader hdr;
  if (std::string why = wire::check_eager({slot, bytes}, hdr); !why.empty()) {
    fail({ErrorKind::Transport, fmt::format("rank {} sent a malformed eager message: {}", peer_, why)});
    return;
  }
  const std::byte* data = slot + sizeof hdr;
  auto pit = posted_recvs_.find(hdr.tag);
  std::shared_ptr<Op> op;
  if (pit != posted_recvs_.end()) {
    auto it = pit->second.find(hdr.msn);
    if (it != pit->second.end()) {
      op = it->second;
      pit->second.erase(it);
      if (pit->second.empty()) posted_recvs_.erase(pit);
    }
  }
  if (op) {
    deliver_eager(op, data, hdr.size);
  } else {
    auto numbered = recv_msn_.find(hdr.tag);
    const bool posted_before = numbered != recv_msn_.end() && hdr.msn < numbered->second;
    auto held = unexpected_.find(hdr.tag);
    if (held != unexpected_.end() && held->second.count(hdr.msn)) {
      fail({ErrorKind::Transport,
            fmt::format("rank {} sent message #{} of tag {} eagerly twice", peer_, hdr.msn, hdr.tag)});
      return;
    }
    // Its receive was posted before and is gone (cancelled): nobody will take it, so it is
    // dropped rather than kept for ever.
    if (!posted_before) unexpected_[hdr.tag][hdr.msn].assign(data, data + hdr.size);
  }
  post_eager_receive(index);
  ++eager_released_;
  return_credits(false);
}

void Link::deliver_eager(const std::shared_ptr<Op>& op, const std::byte* data, uint64_t size) {
  if (size > op->bytes) {
    op->failed = too_long(peer_, *op, size);
  } else if (size > 0 && op->kind == MemoryKind::Cuda) {
    // Into device memory: a driver copy, not memcpy.
    const cuda::CudaDriver& cuda = *t_.gdr().cuda;
    void* dst = op->buf;
    cuda::make_pointer_context_current(cuda, dst);
    cuda::CUresult r = cuda.memcpy_htod(reinterpret_cast<cuda::CUdeviceptr>(dst), data, size);
    if (r != cuda::kCudaSuccess)
      op->failed = Failure{ErrorKind::Transport,
                           fmt::format("copying a {}-byte eager message to the GPU failed: {}", size, cuda::cuda_error_text(cuda, r))};
    op->result_bytes = size;
  } else {
    if (size) std::memcpy(op->buf, data, size);
    op->result_bytes = size;
  }
  // A receive whose clear-to-send is out keeps its slot until the sender voids it; one still in
  // the backlog never writes its entry.
  if (op->seq == 0) cts_backlog_.erase(std::remove(cts_backlog_.begin(), cts_backlog_.end(), op), cts_backlog_.end());
  finish(op);
}

}  // namespace ringlink::verbs
