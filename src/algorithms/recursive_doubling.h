// Recursive doubling allreduce: log2(n) rounds of whole-vector exchanges, for tiny messages
// (latency-bound; the cost model decides up to which size).
#pragma once

#include <memory>

#include "algorithms/common.h"

namespace ringlink::algo {

// Whole message per exchange: only for messages that fit one staging slot.
std::unique_ptr<detail::Operation> make_recursive_doubling_allreduce(const Args& args, int rank, int size);

}  // namespace ringlink::algo
