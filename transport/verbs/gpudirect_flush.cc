#include "transport/verbs/gpudirect_flush.h"

#include <cstring>

#include <fmt/format.h>

#include "transport/verbs/link.h"
#include "transport/verbs/op.h"
#include "transport/verbs/work_request.h"

namespace ringlink::verbs {

GpuDirectFlush::GpuDirectFlush(std::shared_ptr<Device> device, const QpSettings& settings, const ibv_port_attr& port,
                               const ibv_gid& gid, MrCache& cache, int rank)
    : device_(std::move(device)) {
  const QpErrorSite site{rank, -1, "flush"};
  uint32_t no_inline = 0;
  qp_ = create_qp(*device_, settings, 1, &no_inline, site);
  QpPeer self;
  self.qpn = qp_->qp_num;
  self.lid = port.lid;
  self.gid = gid;
  self.mtu = port.active_mtu;
  try {
    connect_qp(*device_, qp_, settings, self, site);
  } catch (...) {
    device_->api.destroy_qp(qp_);
    throw;
  }
  target_ = HostBuffer(4096);
  target_reg_ = cache.acquire(target_.data(), 4, MemoryKind::Host);
}

GpuDirectFlush::~GpuDirectFlush() {
  pending_.clear();
  if (qp_) device_->api.destroy_qp(qp_);
}

void GpuDirectFlush::issue(const std::shared_ptr<Link>& link, const std::shared_ptr<Op>& op) {
  ibv_sge sge{reinterpret_cast<uint64_t>(target_.data()), 1, target_reg_->lkey()};
  ibv_send_wr wr{};
  const uint32_t serial = next_serial_++;
  wr.wr_id = make_wr_id(WrKind::Flush, 0, 0, serial);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_READ;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = reinterpret_cast<uint64_t>(op->buf);
  wr.wr.rdma.rkey = op->reg->rkey();
  ibv_send_wr* bad = nullptr;
  if (int rc = device_->api.post_send(qp_, &wr, &bad)) {
    op->failed = Failure{ErrorKind::Transport, fmt::format("posting the GPUDirect flush failed: {}", std::strerror(rc))};
    link->finish(op);
    return;
  }
  pending_[serial] = {link, op};
}

void GpuDirectFlush::on_completion(const ibv_wc& wc, uint32_t serial) {
  auto it = pending_.find(serial);
  if (it == pending_.end()) return;
  auto [link, op] = it->second;
  pending_.erase(it);
  if (wc.status != IBV_WC_SUCCESS)
    op->failed = Failure{ErrorKind::Transport, fmt::format("the GPUDirect flush read failed: {} (vendor error {:#x})",
                                                           device_->api.wc_status_str(wc.status), wc.vendor_err)};
  link->finish(op);
}

}  // namespace ringlink::verbs
