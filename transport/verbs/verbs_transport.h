// The RDMA verbs transport: RC queue pairs per peer (RINGLINK_IB_QPS for data, one for control),
// a receiver-posted clear-to-send FIFO and RDMA WRITE WITH IMM (see wire.h and
// docs/transports.md), an MR cache, GPUDirect RDMA, and typed errors for every error completion
// and asynchronous event. With RINGLINK_IB_HCA=soft it runs over the software verbs instead of
// libibverbs.
#pragma once

#include <memory>
#include <string>

#include "transport.h"
#include "transport/verbs/gpudirect.h"
#include "transport/verbs/mr_cache.h"

namespace ringlink {

// Throws TransportError "verbs unavailable: <reason>" when no usable device/port exists.
std::unique_ptr<Transport> create_verbs_transport(const TransportSetup& setup);

}  // namespace ringlink

namespace ringlink::verbs {

// What tests and tools may ask a verbs transport beyond the Transport interface.
class VerbsTransportInfo {
 public:
  virtual ~VerbsTransportInfo() = default;
  virtual MrCache& mr_cache() = 0;
  virtual ibv_context* verbs_context() = 0;  // to arm soft-verbs faults in tests
  virtual GpuDirectMode gpudirect_mode() const = 0;
  virtual uint64_t flushes_issued() const = 0;  // GPUDirect flush reads so far
};

}  // namespace ringlink::verbs
