// ringlink-reduce-bench --device cuda: the GPU reduction kernel against a device-to-device copy
// of the same size, in the same run, on device buffers.
#pragma once

#include <cstddef>
#include <vector>

#include "ringlink/types.h"

namespace ringlink::tools {

struct GpuBenchConfig {
  std::vector<size_t> sizes;  // bytes per buffer
  std::vector<DataType> types;
  ReduceOp op = ReduceOp::Sum;
  int reps = 21;
};

// Prints the table; returns the process exit code (non-zero without a usable GPU or on a wrong
// result).
int run_gpu_bench(const GpuBenchConfig& config);

}  // namespace ringlink::tools
