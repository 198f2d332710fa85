#include "stream_order.h"

#include <algorithm>

#include <c10/core/impl/VirtualGuardImpl.h>

namespace ringlink_torch {

void synchronize_current_stream(c10::Device device) {
  // Through the device-generic guard, so the extension needs no CUDA headers or libraries:
  // torch's CUDA library registers the implementation when it is loaded.
  c10::impl::VirtualGuardImpl impl(device.type());
  impl.getStream(device).synchronize();
}

void copy_settled(at::Tensor& dst, const at::Tensor& src) {
  dst.copy_(src);
  if (dst.is_cuda()) synchronize_current_stream(dst.device());
}

std::vector<c10::Device> future_devices(const std::vector<at::Tensor>& tensors) {
  std::vector<c10::Device> devices;
  for (const at::Tensor& t : tensors) {
    if (t.defined() && t.is_cuda() && std::find(devices.begin(), devices.end(), t.device()) == devices.end())
      devices.push_back(t.device());
  }
  return devices;
}

}  // namespace ringlink_torch
