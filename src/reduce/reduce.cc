#include "reduce/reduce.h"

#define RINGLINK_KERNEL_NS generic
#include "reduce/kernels.h"

namespace ringlink::reduce {

namespace generic {
void combine_entry(void* dst, const void* a, const void* b, size_t n, DataType t, ReduceOp op) {
  combine(dst, a, b, n, t, op);
}
}  // namespace generic
#if defined(__x86_64__)
namespace avx2 {
void combine_entry(void* dst, const void* a, const void* b, size_t n, DataType t, ReduceOp op);
}
#endif

namespace {

using CombineFn = void (*)(void*, const void*, const void*, size_t, DataType, ReduceOp);

struct Dispatch {
  CombineFn combine = &generic::combine_entry;
  const char* isa = "generic";
  Dispatch() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) {
      combine = &avx2::combine_entry;
      isa = "avx2+f16c";
    }
#endif
  }
};

const Dispatch& dispatch() {
  static const Dispatch d;
  return d;
}

template <typename T>
void divide_int(T* p, size_t n, int d) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<T>(p[i] / static_cast<T>(d));
}

}  // namespace

void combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op) {
  if (count) dispatch().combine(dst, a, b, count, type, op);
}

void divide(void* buf, size_t n, DataType type, int divisor) {
  if (divisor == 1 || n == 0) return;
  switch (type) {
    case DataType::Float32: {
      auto* p = static_cast<float*>(buf);
      // Division (not multiplication by 1/n) so the average is correctly rounded.
      const float d = static_cast<float>(divisor);
      for (size_t i = 0; i < n; ++i) p[i] /= d;
      break;
    }
    case DataType::Float64: {
      auto* p = static_cast<double*>(buf);
      const double d = divisor;
      for (size_t i = 0; i < n; ++i) p[i] /= d;
      break;
    }
    case DataType::Float16: {
      auto* p = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < n; ++i) p[i] = float_to_half(half_to_float(p[i]) / static_cast<float>(divisor));
      break;
    }
    case DataType::BFloat16: {
      auto* p = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < n; ++i)
        p[i] = float_to_bfloat16(bfloat16_to_float(p[i]) / static_cast<float>(divisor));
      break;
    }
    case DataType::Int8: divide_int(static_cast<int8_t*>(buf), n, divisor); break;
    case DataType::UInt8: divide_int(static_cast<uint8_t*>(buf), n, divisor); break;
    case DataType::Int32: divide_int(static_cast<int32_t*>(buf), n, divisor); break;
    case DataType::Int64: divide_int(static_cast<int64_t*>(buf), n, divisor); break;
  }
}

const char* isa() { return dispatch().isa; }

float half_to_float(uint16_t h) { return generic::f16_to_f32_soft(h); }
uint16_t float_to_half(float f) { return generic::f32_to_f16_soft(f); }
float bfloat16_to_float(uint16_t h) { return generic::bf16_to_f32(h); }
uint16_t float_to_bfloat16(float f) { return generic::f32_to_bf16(f); }

}  // namespace ringlink::reduce
