// Host memory for staging device buffers: grows by doubling (to 2 MiB multiples) and keeps its
// memory, so staging the same tensors call after call touches no new pages. Collectives run
// one at a time, so one scratch serves them all.
#pragma once

#include <algorithm>
#include <cstddef>

#include "common/host_buffer.h"

namespace ringlink::detail {

class HostScratch {
 public:
  std::byte* ensure(size_t bytes) {
    if (bytes > buffer_.size()) buffer_ = HostBuffer(std::max(bytes, 2 * buffer_.size()));
    return buffer_.as<std::byte>();
  }

 private:
  HostBuffer buffer_;
};

}  // namespace ringlink::detail
