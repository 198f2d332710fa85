// Reductions on the GPU: the same operations as reduce::combine / reduce::divide
// (src/reduce/reduce.h), bit for bit, on CUDA device memory.
//
// Each call checks its arguments, queues one kernel on `stream` and returns: nothing waits for
// the GPU, so work queued on the stream after the call sees the result, and the host may reuse
// nothing the kernel reads until the stream has passed it. A null stream means the legacy
// default stream of the calling thread's current context (made the buffers' context when there
// is none). The stream must belong to the buffers' context; buffers must be device (or managed)
// memory of one device, aligned to their element type.
//
// Errors are thrown at the call, never later: InvalidArgumentError for bad arguments, a library
// without the kernels or a host without a usable GPU; TransportError when the driver refuses the
// launch. Faults inside the kernel (a buffer freed meanwhile) surface as CUDA errors on the
// stream, as for any kernel. `rank` (when >= 0) is named in the errors.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/cuda_driver.h"
#include "ringlink/types.h"

namespace ringlink::reduce::cuda {

using Stream = ringlink::cuda::CUstream;

// This libringlink carries the kernels (built with -Dcuda, nvcc found).
bool built();
// The GPU code built in, e.g. "sm_80 sm_90 compute_90"; empty when !built().
const char* architectures();
// The kernels can run here: built, a CUDA driver (12.0 or later) that sees a device, and the
// kernels loaded. Loads them on the first call; `why` says what is missing otherwise.
bool available(std::string* why = nullptr);

// dst[i] = a[i] (op) b[i] for i < count. dst may be a or b, or not overlap them. For Avg this
// sums (finish with divide). Integers wrap, float16/bfloat16 reduce in float32 and round to
// nearest even, NaNs and signed zeros come out as on the host.
void combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op, Stream stream,
             int rank = -1);

// buf[i] /= divisor (>= 1), as reduce::divide: integers truncate toward zero (8-bit ones divide by
// divisor converted to their type, which must not be 0), 16-bit floats round to nearest even.
void divide(void* buf, size_t count, DataType type, int divisor, Stream stream, int rank = -1);

// The kernels the launcher looks up, one per type x operator and one divide per type.
std::vector<std::string> kernel_names();

}  // namespace ringlink::reduce::cuda
