// How one GPU reduction splits into the kernel's vector body and scalar ends, and how many
// blocks it launches. Pure arithmetic on addresses and counts: tested without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "reduce/cuda/kernel_abi.h"

namespace ringlink::reduce::cuda {

// The split of `count` elements of `element_bytes` each (1, 2, 4 or 8; every pointer aligned
// to it) at dst, a and b. When the three share their offset within 16 bytes, the body starts at
// the first 16-byte boundary; otherwise every element is scalar.
Span plan_span(uintptr_t dst, uintptr_t a, uintptr_t b, uint64_t count, size_t element_bytes);

// Blocks of kThreadsPerBlock threads: enough for one turn of the grid-stride loops (each thread
// takes two packs per turn), at most what `multiprocessors` keep resident (8 blocks each), at
// least one.
unsigned blocks_for(const Span& span, size_t element_bytes, int multiprocessors);

}  // namespace ringlink::reduce::cuda
