// How an operation on CUDA tensors is ordered against torch's streams: the one place that
// changes when ringlink's stream-ordered overloads (an extra ringlink::CudaStream argument) land.
//
// Interim, today: ringlink's calls take device pointers but no stream. Before an operation on
// CUDA tensors is issued, torch's current stream on their device is synchronized, so every
// kernel that produced the inputs has finished; the operation's Work completes only once the
// device memory is written, so whoever waits on it needs no further stream ordering.
// Later: issue_in_stream_order passes the current stream to `issue` instead of synchronizing.
// Every call site already forwards whatever `issue` receives as the last argument.
#pragma once

#include <vector>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <ringlink/communicator.h>

namespace ringlink_torch {

// Blocks until the work queued so far on torch's current stream of `device` has run.
void synchronize_current_stream(c10::Device device);

// Issues a ringlink operation on the memory of `t` (and of tensors on the same device) ordered
// after torch's current stream. `issue` is a generic lambda: issue(stream_args...) returns the
// ringlink::Work of the call made with stream_args... appended.
template <typename Issue>
ringlink::Work issue_in_stream_order(const at::Tensor& t, Issue&& issue) {
  if (t.is_cuda()) synchronize_current_stream(t.device());
  return issue();
}

// dst <- src, finished when this returns (on CUDA the copy runs on this thread's current stream,
// which is then synchronized): used for results copied out after an operation completed.
void copy_settled(at::Tensor& dst, const at::Tensor& src);

// The devices a torch Future of these tensors must synchronize with: the CUDA ones.
std::vector<c10::Device> future_devices(const std::vector<at::Tensor>& tensors);

}  // namespace ringlink_torch
