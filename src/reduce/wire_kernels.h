// float32 <-> bf16 / fp16 over arrays, compiled twice like kernels.h: for the baseline ISA and
// with AVX2/F16C. Both round to nearest even and agree bit for bit (NaNs become quiet NaNs
// that keep the payload's top bits), so ranks on different CPUs put the same bits on the wire.
//
// bf16 is the top half of a float32, so plain integer arithmetic does it: add 0x7FFF plus the
// lowest kept bit, then drop the low half (the carry rounds up, ties land on the even value);
// written with AVX2 integer intrinsics where available. fp16 uses F16C's vcvtps2ph/vcvtph2ps,
// which round to nearest even and handle subnormals, overflow to infinity and NaN in hardware;
// without F16C the scalar bit manipulation of kernels.h does the same.
#pragma once

#include <cstddef>
#include <cstdint>

#include "reduce/kernels.h"

namespace ringlink::reduce::RINGLINK_KERNEL_NS {

inline void encode_bf16(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  const __m256i low_mask = _mm256_set1_epi32(0x7FFF), one = _mm256_set1_epi32(1);
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  for (; i + 8 <= n; i += 8) {
    __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(low_mask, _mm256_and_si256(hi, one))), 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, quiet), nan);
    // Eight 32-bit values below 2^16 -> eight 16-bit ones (packus works per 128-bit lane).
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(packed));
  }
#endif
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

inline void decode_bf16(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
#if defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
#endif
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

inline void encode_f16(uint16_t* dst, const float* src, size_t n) {
  size_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) dst[i] = f32_to_f16_soft(src[i]);
}

inline void decode_f16(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = f16_to_f32_soft(src[i]);
}

}  // namespace ringlink::reduce::RINGLINK_KERNEL_NS
