// Built with -mavx2 -mf16c -mfma; called only where the CPU has them.
#define RINGLINK_KERNEL_NS avx2
#include "reduce/kernels.h"
#include "reduce/wire_kernels.h"

#include "ringlink/options.h"

namespace ringlink::reduce::avx2 {
void combine_entry(void* dst, const void* a, const void* b, size_t n, DataType t, ReduceOp op) {
  combine(dst, a, b, n, t, op);
}
void encode_entry(uint16_t* dst, const float* src, size_t n, WireDtype w) {
  w == WireDtype::BF16 ? encode_bf16(dst, src, n) : encode_f16(dst, src, n);
}
void decode_entry(float* dst, const uint16_t* src, size_t n, WireDtype w) {
  w == WireDtype::BF16 ? decode_bf16(dst, src, n) : decode_f16(dst, src, n);
}
}  // namespace ringlink::reduce::avx2
