// Dissemination barrier: ceil(log2 n) rounds of empty messages.
#pragma once

#include <memory>

#include "algorithms/common.h"

namespace ringlink::algo {

std::unique_ptr<detail::Operation> make_barrier(int rank, int size);

}  // namespace ringlink::algo
