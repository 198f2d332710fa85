// Kernel bodies, compiled twice: once for the baseline ISA and once with AVX2/F16C/FMA.
// Each compilation puts them in its own namespace (RINGLINK_KERNEL_NS) so the two sets of
// template instances never collide at link time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ringlink/types.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace ringlink::reduce::RINGLINK_KERNEL_NS {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

// IEEE half <-> float without hardware support.
inline float f16_to_f32_soft(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return bits_to_float(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    // Subnormal: value = mant * 2^-24.
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t f32_to_f16_soft(float f) {
  uint32_t u = float_to_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));  // NaN
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to infinity
  if (abs < 0x38800000u) {
    // Subnormal or zero in half: scale to an integer count of 2^-24 and round to nearest even.
    float v = bits_to_float(abs) * 16777216.0f;
    uint32_t m = static_cast<uint32_t>(v);
    float rem = v - static_cast<float>(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);  // nearest even at bit 13
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

template <typename T>
inline T op_min(T a, T b) {
  // NaN propagates, like torch.min.
  return (a < b || a != a) ? a : b;
}
template <typename T>
inline T op_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

// dst may alias a or b exactly (same address), never partially.
template <typename T>
void combine_typed(T* dst, const T* a, const T* b, size_t n, ReduceOp op) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T> && sizeof(T) >= sizeof(int)) {
    // Signed overflow is undefined; wrap around like every hardware reduction does.
    if (op == ReduceOp::Sum || op == ReduceOp::Avg || op == ReduceOp::Prod) {
      using U = std::make_unsigned_t<T>;
      combine_typed(reinterpret_cast<U*>(dst), reinterpret_cast<const U*>(a), reinterpret_cast<const U*>(b), n, op);
      return;
    }
  }
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(a[i] + b[i]);
      break;
    case ReduceOp::Prod:
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(a[i] * b[i]);
      break;
    case ReduceOp::Min:
      for (size_t i = 0; i < n; ++i) dst[i] = op_min(a[i], b[i]);
      break;
    case ReduceOp::Max:
      for (size_t i = 0; i < n; ++i) dst[i] = op_max(a[i], b[i]);
      break;
  }
}

inline float apply(float x, float y, ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return x + y;
    case ReduceOp::Prod: return x * y;
    case ReduceOp::Min: return op_min(x, y);
    case ReduceOp::Max: return op_max(x, y);
  }
  return x;
}

inline void combine_bf16(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n, ReduceOp op) {
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(apply(bf16_to_f32(a[i]), bf16_to_f32(b[i]), op));
}

inline void combine_f16(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n, ReduceOp op) {
  size_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    __m256 y = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    __m256 r;
    switch (op) {
      case ReduceOp::Prod: r = _mm256_mul_ps(x, y); break;
      case ReduceOp::Min: {
        // NaN in x propagates: pick x where x < y or x is NaN.
        __m256 pick_x = _mm256_or_ps(_mm256_cmp_ps(x, y, _CMP_LT_OQ), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        r = _mm256_blendv_ps(y, x, pick_x);
        break;
      }
      case ReduceOp::Max: {
        __m256 pick_x = _mm256_or_ps(_mm256_cmp_ps(x, y, _CMP_GT_OQ), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        r = _mm256_blendv_ps(y, x, pick_x);
        break;
      }
      default: r = _mm256_add_ps(x, y);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
  }
#endif
  for (; i < n; ++i) dst[i] = f32_to_f16_soft(apply(f16_to_f32_soft(a[i]), f16_to_f32_soft(b[i]), op));
}

inline void combine(void* dst, const void* a, const void* b, size_t n, DataType t, ReduceOp op) {
  switch (t) {
    case DataType::Float32:
      combine_typed(static_cast<float*>(dst), static_cast<const float*>(a), static_cast<const float*>(b), n, op);
      break;
    case DataType::Float64:
      combine_typed(static_cast<double*>(dst), static_cast<const double*>(a), static_cast<const double*>(b), n, op);
      break;
    case DataType::Int32:
      combine_typed(static_cast<int32_t*>(dst), static_cast<const int32_t*>(a), static_cast<const int32_t*>(b), n,
                    op);
      break;
    case DataType::Int64:
      combine_typed(static_cast<int64_t*>(dst), static_cast<const int64_t*>(a), static_cast<const int64_t*>(b), n,
                    op);
      break;
    case DataType::Int8:
      combine_typed(static_cast<int8_t*>(dst), static_cast<const int8_t*>(a), static_cast<const int8_t*>(b), n, op);
      break;
    case DataType::UInt8:
      combine_typed(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(b), n,
                    op);
      break;
    case DataType::Float16:
      combine_f16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), n,
                  op);
      break;
    case DataType::BFloat16:
      combine_bf16(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), n,
                   op);
      break;
  }
}

}  // namespace ringlink::reduce::RINGLINK_KERNEL_NS
