// Reduction kernels: dst[i] = a[i] (op) b[i], vectorised for the CPU it runs on.
// float16 and bfloat16 are reduced in float32 and rounded to nearest even.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ringlink/types.h"

namespace ringlink::reduce {

// dst may alias a or b (the engine reduces in place into the receive buffer). For Avg this
// sums; finish with divide().
void combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op);

// buf[i] /= divisor (integers truncate toward zero; 16-bit floats round to nearest even).
void divide(void* buf, size_t count, DataType type, int divisor);

// The instruction set the kernels were dispatched to ("avx2+f16c" or "generic").
const char* isa();

// Scalar conversions, exposed for tests and for building reference results.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
float bfloat16_to_float(uint16_t h);
uint16_t float_to_bfloat16(float f);

}  // namespace ringlink::reduce
