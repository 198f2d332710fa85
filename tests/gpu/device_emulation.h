// The CUDA built-ins kernels.cu uses, for compiling its kernels as ordinary C++ and running them
// on the CPU, one thread after another. A model of the GPU, not the GPU: arithmetic is IEEE with
// round to nearest as on the device, and every NaN an operation or conversion makes is the
// device's canonical one, so the kernels' own NaN handling is what makes results match the host.
// The hardware conversions are modelled by the exact (half to float) and correctly rounded
// (float to half) host conversions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "reduce/reduce.h"

#define RINGLINK_EMULATE_CUDA_BUILTINS 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct EmulatedDim {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local EmulatedDim blockIdx, blockDim, gridDim, threadIdx;

inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline double __longlong_as_double(long long u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}
inline long long __double_as_longlong(double d) {
  long long u;
  std::memcpy(&u, &d, 8);
  return u;
}

inline constexpr unsigned kDeviceNaN32 = 0x7FFFFFFFu;
inline constexpr long long kDeviceNaN64 = 0x7FFFFFFFFFFFFFFFll;
inline float device_f32(float r) { return std::isnan(r) ? __uint_as_float(kDeviceNaN32) : r; }
inline double device_f64(double r) { return std::isnan(r) ? __longlong_as_double(kDeviceNaN64) : r; }

inline float __fadd_rn(float x, float y) { return device_f32(x + y); }
inline float __fmul_rn(float x, float y) { return device_f32(x * y); }
inline float __fdiv_rn(float x, float y) { return device_f32(x / y); }
inline double __dadd_rn(double x, double y) { return device_f64(x + y); }
inline double __dmul_rn(double x, double y) { return device_f64(x * y); }
inline double __ddiv_rn(double x, double y) { return device_f64(x / y); }

struct __half {
  uint16_t bits;
};
inline __half __ushort_as_half(unsigned short h) { return __half{h}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline float __half2float(__half h) {
  return (h.bits & 0x7FFFu) > 0x7C00u ? __uint_as_float(kDeviceNaN32) : ringlink::reduce::half_to_float(h.bits);
}
inline __half __float2half_rn(float f) {
  return __half{std::isnan(f) ? uint16_t{0x7FFF} : ringlink::reduce::float_to_half(f)};
}
