// The staging layer for device buffers: the device operations and the slots the chunk pipeline
// (src/algorithms/chain_pipeline) moves chunks through. The engine makes one per communicator on
// the first operation on device memory and decides, through the transport's
// supports(MemoryKind::Cuda), whether chunks go on the wire from device slots or through pinned
// host slots.
#pragma once

#include <cstddef>
#include <memory>

#include "algorithms/staging_pool.h"
#include "comm/device_ops.h"
#include "transport.h"

namespace ringlink::detail {

class DeviceStaging {
 public:
  // Slots of `slot_bytes`: `slots` on the device; without a device-capable transport also as many
  // pinned host slots for receives and as many for sends (separate, so that sends waiting for a
  // slot never hold up the receives that free them). Registered with `transport` (may be null).
  DeviceStaging(std::unique_ptr<DeviceOps> ops, Transport* transport, size_t slot_bytes, int slots);
  ~DeviceStaging();
  DeviceStaging(const DeviceStaging&) = delete;
  DeviceStaging& operator=(const DeviceStaging&) = delete;

  DeviceOps& ops() const { return *ops_; }
  // Chunks go on the wire from device memory (the transport supports it).
  bool wire_on_device() const { return wire_on_device_; }
  algo::StagingPool& device_slots() const { return *device_; }
  algo::StagingPool& send_slots() const { return *send_; }  // pinned host (not wire_on_device)
  algo::StagingPool& recv_slots() const { return *recv_; }

 private:
  struct Block {
    std::byte* data = nullptr;
    std::shared_ptr<MemoryRegion> mr;
  };
  Block host_block(Transport* t, size_t bytes);

  std::unique_ptr<DeviceOps> ops_;
  bool wire_on_device_ = false;
  Block device_mem_, send_mem_, recv_mem_;
  std::unique_ptr<algo::StagingPool> device_, send_, recv_;
};

}  // namespace ringlink::detail
