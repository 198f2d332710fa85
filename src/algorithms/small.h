// Latency-bound schedules: recursive doubling allreduce for tiny messages and a dissemination
// barrier.
#pragma once

#include <memory>

#include "algorithms/common.h"

namespace ringlink::algo {

// Whole message per exchange: only for messages that fit one staging slot.
std::unique_ptr<detail::Operation> make_recursive_doubling_allreduce(const Args& args, int rank, int size);
std::unique_ptr<detail::Operation> make_barrier(int rank, int size);

}  // namespace ringlink::algo
