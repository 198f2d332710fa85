// The verbs transport itself: the device and port it chose, registration (the MR cache), the
// links by peer, and progress (the shared CQ, the CTS FIFOs of links with waiting sends, the
// asynchronous events).
//
// Progress costs no system call on real hardware: ibv_poll_cq and the CTS FIFO are reads of
// memory the HCA writes, and asynchronous events are read by a thread that sleeps in poll().
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/host_buffer.h"
#include "transport.h"
#include "transport/verbs/async_events.h"
#include "transport/verbs/device.h"
#include "transport/verbs/gpudirect.h"
#include "transport/verbs/gpudirect_flush.h"
#include "transport/verbs/link.h"
#include "transport/verbs/mr_cache.h"
#include "transport/verbs/queue_pair.h"
#include "transport/verbs/verbs_transport.h"

namespace ringlink::verbs {

class VerbsTransport final : public Transport, public VerbsTransportInfo {
 public:
  explicit VerbsTransport(const TransportSetup& setup);
  ~VerbsTransport() override;

  std::string name() const override { return name_; }
  std::vector<std::byte> endpoint_info(int peer) override;
  std::unique_ptr<Connection> connect(int peer, std::span<const std::byte> remote) override;
  std::shared_ptr<MemoryRegion> register_memory(void* ptr, size_t bytes, MemoryKind kind) override;
  bool supports(MemoryKind kind) const override { return kind == MemoryKind::Host || gdr_.direct(); }
  LinkProperties properties() const override;
  bool progress() override;

  MrCache& mr_cache() override { return *cache_; }
  ibv_context* verbs_context() override { return dev_->ctx; }
  GpuDirectMode gpudirect_mode() const override { return gdr_.mode; }
  uint64_t flushes_issued() const override { return flush_ ? flush_->issued() : 0; }

  // For links.
  const VerbsApi& api() const { return api_; }
  const std::shared_ptr<Device>& device() const { return dev_; }
  int rank() const { return rank_; }
  const Options& options() const { return opts_; }
  const QpSettings& qp_settings() const { return qp_settings_; }
  const ibv_port_attr& port_attr() const { return port_attr_; }
  const ibv_gid& gid() const { return gid_; }
  int gid_index() const { return gid_index_; }
  bool ethernet() const { return ethernet_; }
  const GpuDirect& gdr() const { return gdr_; }
  // A user buffer's registration: from the cache, or (RINGLINK_IB_MR_CACHE=0, host memory) made
  // for this message and released after it.
  std::shared_ptr<Registration> user_registration(const void* buf, size_t bytes, MemoryKind kind);
  const std::optional<Failure>& transport_failure() const { return transport_failure_; }
  void add_hungry(Link* l);
  void register_qp(uint32_t qpn, Link* l) { qp_links_[qpn] = l; }
  void forget_link(Link* l);
  // Issues the GPUDirect flush for a receive into device memory; the op completes after it.
  void flush(const std::shared_ptr<Link>& link, const std::shared_ptr<Op>& op);

 private:
  void open(const TransportSetup& setup);
  void arm_soft_fault();
  std::shared_ptr<Registration> register_range(uintptr_t start, size_t length, MemoryKind kind);
  bool handle_async_events();  // async_events.cc
  void fail_all(const Failure& f);

  const VerbsApi& api_;
  int rank_;
  Options opts_;
  std::string name_;
  std::shared_ptr<Device> dev_;
  ibv_device_attr dev_attr_{};
  ibv_port_attr port_attr_{};
  ibv_gid gid_{};
  int gid_index_ = -1;
  bool ethernet_ = false;
  QpSettings qp_settings_;
  std::string device_name_;
  double link_gbit_ = 0;  // the port's data rate, Gb/s (0: unknown)
  GpuDirect gdr_;
  std::unique_ptr<MrCache> cache_;

  std::unordered_map<int, std::shared_ptr<Link>> pending_;  // endpoint published, not yet connected
  std::vector<Link*> links_;                                 // by id; null once closed
  std::unordered_map<uint32_t, Link*> qp_links_;            // by QP number, for async events
  std::vector<Link*> hungry_;                                // links with sends waiting for a CTS
  std::optional<Failure> transport_failure_;

  std::unique_ptr<GpuDirectFlush> flush_;   // made at the first receive that needs one
  std::unique_ptr<AsyncEventReader> async_;
};

}  // namespace ringlink::verbs
