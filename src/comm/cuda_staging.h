// Collectives on CUDA device buffers over a transport that moves host memory: the inputs are
// copied to host scratch, the host schedule runs there, the outputs are copied back.
#pragma once

#include <functional>
#include <memory>

#include "comm/host_scratch.h"
#include "comm/operation.h"

namespace ringlink::detail {

// Builds the host schedule once the host addresses are known.
using HostPlan = std::function<std::unique_ptr<Operation>(const std::byte* send, std::byte* recv)>;

// `send`/`recv` may each be device or host memory (null where the collective does not use it
// on this rank); only device ones are staged. In-place calls (overlapping device ranges) share
// one host copy with the same layout, in `scratch` (used only while the operation runs on the
// driving thread). `rank` is named in errors.
std::unique_ptr<Operation> stage_through_host(int rank, HostScratch& scratch, const char* name, const void* send,
                                              size_t send_bytes, void* recv, size_t recv_bytes, HostPlan plan);

}  // namespace ringlink::detail
