#pragma once

#include <memory>

#include "algorithms/common.h"

namespace ringlink::algo {

enum class RingMode { AllReduce, ReduceScatter, AllGather };

// `depth`: chains (chunk indices) in flight at once.
std::unique_ptr<detail::Operation> make_ring(RingMode mode, const Args& args, int rank, int size, size_t chunk_bytes,
                                             int depth);

}  // namespace ringlink::algo
