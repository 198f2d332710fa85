// Ring schedules (rank r sends to r+1, receives from r-1): reduce-scatter, allgather, and
// allreduce as the one followed by the other. ring.cc describes the steps.
#pragma once

#include <memory>

#include "algorithms/common.h"

namespace ringlink::algo {

enum class RingMode { AllReduce, ReduceScatter, AllGather };

// `depth`: chains (chunk indices) in flight at once. `size` >= 2 (one rank is a local copy,
// planned in src/comm/collectives.cc).
std::unique_ptr<detail::Operation> make_ring(RingMode mode, const Args& args, int rank, int size, size_t chunk_bytes,
                                             int depth);

}  // namespace ringlink::algo
