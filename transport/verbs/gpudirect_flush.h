// The GPUDirect flush. On GPUs before compute capability 9.0, data the HCA wrote into GPU memory
// is not ordered before a later kernel's reads; a 1-byte RDMA READ of the buffer through a QP
// connected to itself is, since the READ cannot complete before the earlier writes into that
// memory have landed. A receive into such memory completes when its READ does.
#pragma once

#include <infiniband/verbs.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/host_buffer.h"
#include "transport/verbs/device.h"
#include "transport/verbs/mr_cache.h"
#include "transport/verbs/queue_pair.h"

namespace ringlink::verbs {

class Link;
struct Op;

class GpuDirectFlush {
 public:
  // Creates the loopback QP (port `port`, addressed by `gid` when routed globally) and the
  // READ's local target, registered through `cache`. Throws TransportError naming `rank`.
  GpuDirectFlush(std::shared_ptr<Device> device, const QpSettings& settings, const ibv_port_attr& port,
                 const ibv_gid& gid, MrCache& cache, int rank);
  ~GpuDirectFlush();
  GpuDirectFlush(const GpuDirectFlush&) = delete;
  GpuDirectFlush& operator=(const GpuDirectFlush&) = delete;

  // Reads back one byte of `op`'s buffer; `link` finishes the op when the READ completes.
  void issue(const std::shared_ptr<Link>& link, const std::shared_ptr<Op>& op);
  void on_completion(const ibv_wc& wc, uint32_t serial);
  uint64_t issued() const { return next_serial_; }

 private:
  std::shared_ptr<Device> device_;
  ibv_qp* qp_ = nullptr;
  HostBuffer target_;
  std::shared_ptr<Registration> target_reg_;
  uint32_t next_serial_ = 0;
  std::unordered_map<uint32_t, std::pair<std::shared_ptr<Link>, std::shared_ptr<Op>>> pending_;
};

}  // namespace ringlink::verbs
