#include "comm/stream_order.h"

#include <stdexcept>

#include <fmt/format.h>

#include "ringlink/error.h"

namespace ringlink::detail {
namespace {

class StreamOrdered final : public Operation {
 public:
  StreamOrdered(int rank, DeviceStaging& device, void* stream, bool hold, std::unique_ptr<Operation> op)
      : ops_(device.ops()), inner_(std::move(op)) {
    try {
      mark_ = ops_.mark_stream(stream);
      if (hold) hold_ = ops_.hold_stream(stream);
    } catch (const std::runtime_error& e) {
      ops_.drop_mark(mark_);
      throw TransportError(rank, -1, inner_->name(), fmt::format("ordering on the CUDA stream: {}", e.what()));
    }
  }
  ~StreamOrdered() override {
    ops_.release_hold(hold_);
    ops_.drop_mark(mark_);
  }
  const char* name() const override { return inner_->name(); }
  bool is_point_to_point() const override { return inner_->is_point_to_point(); }
  int waiting_on() const override { return inner_->waiting_on(); }
  void start(const OpContext& ctx) override {
    ops_.follow_mark(mark_);
    inner_->start(ctx);
  }
  Progress advance(const OpContext& ctx) override { return inner_->advance(ctx); }

 private:
  DeviceOps& ops_;
  std::unique_ptr<Operation> inner_;
  void* mark_ = nullptr;
  void* hold_ = nullptr;
};

class DeviceCopy final : public Operation {
 public:
  DeviceCopy(const char* name, DeviceStaging& device, const void* src, void* dst, size_t bytes)
      : name_(name), ops_(device.ops()), src_(src), dst_(dst), bytes_(bytes) {}
  const char* name() const override { return name_; }
  void start(const OpContext&) override {
    if (dst_ && src_ && dst_ != src_ && bytes_) fence_ = ops_.copy(dst_, src_, bytes_, {});
  }
  Progress advance(const OpContext&) override { return ops_.done(fence_) ? Progress::Done : Progress::Waiting; }

 private:
  const char* name_;
  DeviceOps& ops_;
  const void* src_;
  void* dst_;
  size_t bytes_;
  Fence fence_ = 0;
};

}  // namespace

std::unique_ptr<Operation> stream_ordered(int rank, DeviceStaging& device, void* stream, bool hold,
                                          std::unique_ptr<Operation> op) {
  return std::make_unique<StreamOrdered>(rank, device, stream, hold, std::move(op));
}

std::unique_ptr<Operation> device_copy(const char* name, DeviceStaging& device, const void* src, void* dst,
                                       size_t bytes) {
  return std::make_unique<DeviceCopy>(name, device, src, dst, bytes);
}

}  // namespace ringlink::detail
