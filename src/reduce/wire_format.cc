#include "reduce/wire_format.h"

#include <algorithm>

#include "reduce/reduce.h"

#define RINGLINK_KERNEL_NS generic
#include "reduce/wire_kernels.h"

namespace ringlink::reduce {

namespace generic {
void encode_entry(uint16_t* dst, const float* src, size_t n, WireDtype w) {
  w == WireDtype::BF16 ? encode_bf16(dst, src, n) : encode_f16(dst, src, n);
}
void decode_entry(float* dst, const uint16_t* src, size_t n, WireDtype w) {
  w == WireDtype::BF16 ? decode_bf16(dst, src, n) : decode_f16(dst, src, n);
}
}  // namespace generic
#if defined(__x86_64__)
namespace avx2 {
void encode_entry(uint16_t* dst, const float* src, size_t n, WireDtype w);
void decode_entry(float* dst, const uint16_t* src, size_t n, WireDtype w);
}  // namespace avx2
#endif

namespace {

using EncodeFn = void (*)(uint16_t*, const float*, size_t, WireDtype);
using DecodeFn = void (*)(float*, const uint16_t*, size_t, WireDtype);

struct Dispatch {
  EncodeFn encode = &generic::encode_entry;
  DecodeFn decode = &generic::decode_entry;
  Dispatch() {
#if defined(__x86_64__)
    // The same CPU test as the reduction kernels (reduce.cc), so isa() names both.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) {
      encode = &avx2::encode_entry;
      decode = &avx2::decode_entry;
    }
#endif
  }
};

const Dispatch& dispatch() {
  static const Dispatch d;
  return d;
}

// Elements per pass of the fused forms: a 4 KiB float32 block stays in L1 between the steps.
constexpr size_t kBlock = 1024;

}  // namespace

void encode(uint16_t* dst, const float* src, size_t count, WireDtype w) {
  if (count) dispatch().encode(dst, src, count, w);
}

void decode(float* dst, const uint16_t* src, size_t count, WireDtype w) {
  if (count) dispatch().decode(dst, src, count, w);
}

void combine_from_wire(float* dst, const float* local, const uint16_t* wire, size_t count, WireDtype w, ReduceOp op) {
  float block[kBlock];
  for (size_t i = 0; i < count; i += kBlock) {
    const size_t m = std::min(kBlock, count - i);
    decode(block, wire + i, m, w);
    combine(dst + i, local + i, block, m, DataType::Float32, op);
  }
}

void combine_into_wire(uint16_t* wire, const float* local, size_t count, WireDtype w, ReduceOp op) {
  float block[kBlock];
  for (size_t i = 0; i < count; i += kBlock) {
    const size_t m = std::min(kBlock, count - i);
    decode(block, wire + i, m, w);
    combine(block, local + i, block, m, DataType::Float32, op);
    encode(wire + i, block, m, w);
  }
}

void complete_from_wire(float* dst, const float* local, uint16_t* wire, size_t count, WireDtype w, ReduceOp op,
                        int divisor) {
  float block[kBlock];
  for (size_t i = 0; i < count; i += kBlock) {
    const size_t m = std::min(kBlock, count - i);
    decode(block, wire + i, m, w);
    combine(block, local + i, block, m, DataType::Float32, op);
    divide(block, m, DataType::Float32, divisor);
    encode(wire + i, block, m, w);
    decode(dst + i, wire + i, m, w);
  }
}

void round_through_wire(float* p, size_t count, WireDtype w) {
  uint16_t block[kBlock];
  for (size_t i = 0; i < count; i += kBlock) {
    const size_t m = std::min(kBlock, count - i);
    encode(block, p + i, m, w);
    decode(p + i, block, m, w);
  }
}

}  // namespace ringlink::reduce
