// Per-element semantics of the GPU reductions, matching the host kernels (src/reduce/kernels.h
// and reduce.cc) bit for bit, so a rank that reduces on the GPU and one that reduces on the CPU
// produce the same bytes:
// - float32/float64: IEEE operations with round-to-nearest intrinsics (__fadd_rn & co. are
//   never contracted into FMAs nor approximated, whatever the compiler flags); subnormals kept.
// - NaNs: the host propagates an input NaN, quieted (a's if a is NaN, else b's); from non-NaN
//   operands it makes its own default NaN. The GPU would return its canonical NaN instead, so
//   a NaN result is replaced by the host's. Min and Max select an operand, as the host does.
// - float16/bfloat16: widened to float32 exactly, reduced there, rounded to nearest even; NaNs
//   convert the way the host's conversions do (payload kept, quiet bit set).
// - integers: Sum and Prod wrap around (computed unsigned), division truncates toward zero.
#pragma once

#if !defined(RINGLINK_EMULATE_CUDA_BUILTINS)  // tests/gpu compiles this file for the CPU too
#include <cuda_fp16.h>
#endif

#include <cstdint>
#include <type_traits>

#include "reduce/cuda/kernel_abi.h"

namespace ringlink::reduce::cuda::device {

// ---- NaN rules (float32 / float64) ----------------------------------------------------------

__device__ __forceinline__ bool is_nan(float x) { return (__float_as_uint(x) & 0x7FFFFFFFu) > 0x7F800000u; }
__device__ __forceinline__ bool is_nan(double x) {
  return (static_cast<uint64_t>(__double_as_longlong(x)) & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull;
}

// The NaN the host returns for an operation on x and y whose result is NaN.
__device__ __forceinline__ float host_nan(float x, float y, const HostNaN& nan) {
  if (is_nan(x)) return __uint_as_float(__float_as_uint(x) | 0x00400000u);
  if (is_nan(y)) return __uint_as_float(__float_as_uint(y) | 0x00400000u);
  return __uint_as_float(nan.f32);
}
__device__ __forceinline__ double host_nan(double x, double y, const HostNaN& nan) {
  constexpr uint64_t quiet = 0x0008000000000000ull;
  if (is_nan(x)) return __longlong_as_double(static_cast<long long>(static_cast<uint64_t>(__double_as_longlong(x)) | quiet));
  if (is_nan(y)) return __longlong_as_double(static_cast<long long>(static_cast<uint64_t>(__double_as_longlong(y)) | quiet));
  return __longlong_as_double(static_cast<long long>(nan.f64));
}

// ---- the operations, on the type an element is computed in ----------------------------------

template <typename T>
__device__ __forceinline__ T add(T x, T y, const HostNaN&) {
  static_assert(std::is_integral_v<T>);
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(x) + static_cast<U>(y));  // wraps, like the host
}
__device__ __forceinline__ float add(float x, float y, const HostNaN& nan) {
  float r = __fadd_rn(x, y);
  return is_nan(r) ? host_nan(x, y, nan) : r;
}
__device__ __forceinline__ double add(double x, double y, const HostNaN& nan) {
  double r = __dadd_rn(x, y);
  return is_nan(r) ? host_nan(x, y, nan) : r;
}

template <typename T>
__device__ __forceinline__ T mul(T x, T y, const HostNaN&) {
  static_assert(std::is_integral_v<T>);
  using U = std::make_unsigned_t<T>;
  // uint8 operands promote to int; their product (< 2^16) cannot overflow it.
  return static_cast<T>(static_cast<U>(x) * static_cast<U>(y));
}
__device__ __forceinline__ float mul(float x, float y, const HostNaN& nan) {
  float r = __fmul_rn(x, y);
  return is_nan(r) ? host_nan(x, y, nan) : r;
}
__device__ __forceinline__ double mul(double x, double y, const HostNaN& nan) {
  double r = __dmul_rn(x, y);
  return is_nan(r) ? host_nan(x, y, nan) : r;
}

// As the host's op_min / op_max: a NaN in x is returned, a NaN only in y is returned too (x < y
// is false), and of two equal values (+0 and -0) y is.
template <typename T>
__device__ __forceinline__ T min_of(T x, T y) {
  return (x < y || x != x) ? x : y;
}
template <typename T>
__device__ __forceinline__ T max_of(T x, T y) {
  return (x > y || x != x) ? x : y;
}

template <typename T>
__device__ __forceinline__ T divide_by(T x, int divisor, const HostNaN&) {
  static_assert(std::is_integral_v<T>);
  // The host divides by static_cast<T>(divisor) in int arithmetic (8-bit types promote).
  return static_cast<T>(x / static_cast<T>(divisor));
}
__device__ __forceinline__ float divide_by(float x, int divisor, const HostNaN& nan) {
  const float d = static_cast<float>(divisor);
  float r = __fdiv_rn(x, d);  // correctly rounded, as the host's division
  return is_nan(r) ? host_nan(x, d, nan) : r;
}
__device__ __forceinline__ double divide_by(double x, int divisor, const HostNaN& nan) {
  const double d = divisor;
  double r = __ddiv_rn(x, d);
  return is_nan(r) ? host_nan(x, d, nan) : r;
}

// ---- element types: how an element is stored and widened ------------------------------------

// Types computed as stored.
template <typename T>
struct Native {
  using Storage = T;
  using Compute = T;
  __device__ __forceinline__ static T load(T v) { return v; }
  __device__ __forceinline__ static T store(T v) { return v; }
};

// IEEE half in 16 bits. The hardware conversions are exact (half to float) and round to nearest
// even (float to half), but make canonical NaNs: NaNs take the host's software path instead.
struct Half {
  using Storage = uint16_t;
  using Compute = float;
  __device__ __forceinline__ static float load(uint16_t h) {
    if ((h & 0x7FFFu) > 0x7C00u)
      return __uint_as_float((static_cast<uint32_t>(h & 0x8000u) << 16) | 0x7F800000u |
                             (static_cast<uint32_t>(h & 0x3FFu) << 13));
    return __half2float(__ushort_as_half(h));
  }
  __device__ __forceinline__ static uint16_t store(float f) {
    const uint32_t u = __float_as_uint(f);
    const uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7E00u | ((abs >> 13) & 0x3FFu));
    return __half_as_ushort(__float2half_rn(f));
  }
};

// bfloat16: the upper half of a float32; rounding written out as the host writes it.
struct BFloat16 {
  using Storage = uint16_t;
  using Compute = float;
  __device__ __forceinline__ static float load(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
  __device__ __forceinline__ static uint16_t store(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);  // nearest, ties to even
    return static_cast<uint16_t>(u >> 16);
  }
};

// ---- operators as function objects ----------------------------------------------------------

struct Sum {
  HostNaN nan;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C y) const { return add(x, y, nan); }
};
struct Prod {
  HostNaN nan;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C y) const { return mul(x, y, nan); }
};
struct Min {
  HostNaN nan;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C y) const { return min_of(x, y); }
};
struct Max {
  HostNaN nan;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C y) const { return max_of(x, y); }
};

}  // namespace ringlink::reduce::cuda::device
