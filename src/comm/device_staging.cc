#include "comm/device_staging.h"

#include <new>

namespace ringlink::detail {

DeviceStaging::DeviceStaging(std::unique_ptr<DeviceOps> ops, Transport* transport, size_t slot_bytes, int slots)
    : ops_(std::move(ops)), wire_on_device_(transport && transport->supports(MemoryKind::Cuda)) {
  const size_t bytes = slot_bytes * static_cast<size_t>(slots);
  device_mem_.data = static_cast<std::byte*>(ops_->allocate(bytes));
  if (transport && wire_on_device_) device_mem_.mr = transport->register_memory(device_mem_.data, bytes, MemoryKind::Cuda);
  device_ = std::make_unique<algo::StagingPool>(device_mem_.data, slot_bytes, slots, device_mem_.mr.get());
  if (!wire_on_device_) {
    send_mem_ = host_block(transport, bytes);
    recv_mem_ = host_block(transport, bytes);
  }
  send_ = std::make_unique<algo::StagingPool>(send_mem_.data, slot_bytes, send_mem_.data ? slots : 0, send_mem_.mr.get());
  recv_ = std::make_unique<algo::StagingPool>(recv_mem_.data, slot_bytes, recv_mem_.data ? slots : 0, recv_mem_.mr.get());
}

DeviceStaging::Block DeviceStaging::host_block(Transport* t, size_t bytes) {
  Block b;
  b.data = static_cast<std::byte*>(::operator new(bytes, std::align_val_t{4096}));
  try {
    ops_->pin(b.data, bytes);
  } catch (...) {
    ::operator delete(b.data, std::align_val_t{4096});
    throw;
  }
  if (t) b.mr = t->register_memory(b.data, bytes, MemoryKind::Host);
  return b;
}

DeviceStaging::~DeviceStaging() {
  for (Block* b : {&send_mem_, &recv_mem_}) {
    if (!b->data) continue;
    b->mr.reset();
    ops_->unpin(b->data);
    ::operator delete(b->data, std::align_val_t{4096});
  }
  device_mem_.mr.reset();
  ops_->release(device_mem_.data);
}

}  // namespace ringlink::detail
