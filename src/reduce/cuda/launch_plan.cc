#include "reduce/cuda/launch_plan.h"

#include <algorithm>

namespace ringlink::reduce::cuda {

Span plan_span(uintptr_t dst, uintptr_t a, uintptr_t b, uint64_t count, size_t element_bytes) {
  const uintptr_t offset = dst % kVectorBytes;
  if (a % kVectorBytes != offset || b % kVectorBytes != offset) return Span{count, count, 0};
  const uint64_t per_pack = kVectorBytes / element_bytes;
  const uint64_t head = std::min<uint64_t>(count, ((kVectorBytes - offset) % kVectorBytes) / element_bytes);
  return Span{count, head, (count - head) / per_pack};
}

unsigned blocks_for(const Span& span, size_t element_bytes, int multiprocessors) {
  constexpr uint64_t kResidentBlocksPerMultiprocessor = 8;  // 2048 threads per SM on sm_80 / sm_90
  const uint64_t scalars = span.count - span.packs * (kVectorBytes / element_bytes);
  const uint64_t threads = std::max((span.packs + 1) / 2, scalars);
  const uint64_t wanted = (threads + kThreadsPerBlock - 1) / kThreadsPerBlock;
  const uint64_t resident = static_cast<uint64_t>(std::max(multiprocessors, 1)) * kResidentBlocksPerMultiprocessor;
  return static_cast<unsigned>(std::clamp<uint64_t>(wanted, 1, resident));
}

}  // namespace ringlink::reduce::cuda
