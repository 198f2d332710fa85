// Built with -mavx2 -mf16c -mfma; called only where the CPU has them.
#define RINGLINK_KERNEL_NS avx2
#include "reduce/kernels.h"

namespace ringlink::reduce::avx2 {
void combine_entry(void* dst, const void* a, const void* b, size_t n, DataType t, ReduceOp op) {
  combine(dst, a, b, n, t, op);
}
}  // namespace ringlink::reduce::avx2
