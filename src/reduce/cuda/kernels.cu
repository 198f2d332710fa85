// The GPU reduction kernels: dst[i] = a[i] (op) b[i] and buf[i] /= divisor, for every element
// type. Compiled by nvcc into a fatbin that libringlink embeds and loads through the driver
// API (launcher.cc); the names are extern "C" so the launcher finds them by name.
//
// Shape: a grid-stride loop over 16-byte packs (one 128-bit load per operand, one store), then
// the scalar elements before the first shared 16-byte boundary and after the last. dst may be
// a or b: each element is read and written by the same thread, so the pointers are not
// __restrict__ and the loads are ordinary (coherent) ones.
#include "reduce/cuda/element.cuh"

namespace ringlink::reduce::cuda::device {
namespace {

template <typename S>
union Pack {
  uint4 bits;
  S v[kVectorBytes / sizeof(S)];
};

__device__ __forceinline__ uint64_t first_thread() {
  return static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ uint64_t thread_count() { return static_cast<uint64_t>(gridDim.x) * blockDim.x; }

// The k-th scalar element: the head first, then the tail after the vector body.
__device__ __forceinline__ uint64_t scalar_index(const Span& s, uint64_t k, uint64_t body_end) {
  return k < s.head ? k : body_end + (k - s.head);
}

template <typename E, typename Op>
__device__ __forceinline__ void combine_span(typename E::Storage* dst, const typename E::Storage* a,
                                             const typename E::Storage* b, const Span& s, Op op) {
  using S = typename E::Storage;
  constexpr uint64_t P = kVectorBytes / sizeof(S);
  const uint64_t first = first_thread(), stride = thread_count();
  const uint4* av = reinterpret_cast<const uint4*>(a + s.head);
  const uint4* bv = reinterpret_cast<const uint4*>(b + s.head);
  uint4* dv = reinterpret_cast<uint4*>(dst + s.head);
  // Two packs per thread and turn: four 16-byte loads in flight before the first use.
  for (uint64_t p = first; p < s.packs; p += 2 * stride) {
    const uint64_t q = p + stride;
    const bool second = q < s.packs;
    Pack<S> x[2] = {}, y[2] = {}, r[2];
    x[0].bits = av[p];
    y[0].bits = bv[p];
    if (second) {
      x[1].bits = av[q];
      y[1].bits = bv[q];
    }
#pragma unroll
    for (uint64_t k = 0; k < P; ++k) r[0].v[k] = E::store(op(E::load(x[0].v[k]), E::load(y[0].v[k])));
    dv[p] = r[0].bits;
    if (second) {
#pragma unroll
      for (uint64_t k = 0; k < P; ++k) r[1].v[k] = E::store(op(E::load(x[1].v[k]), E::load(y[1].v[k])));
      dv[q] = r[1].bits;
    }
  }
  const uint64_t body_end = s.head + s.packs * P;
  const uint64_t scalars = s.count - s.packs * P;
  for (uint64_t k = first; k < scalars; k += stride) {
    const uint64_t i = scalar_index(s, k, body_end);
    dst[i] = E::store(op(E::load(a[i]), E::load(b[i])));
  }
}

template <typename E>
__device__ __forceinline__ void divide_span(typename E::Storage* buf, const Span& s, int divisor, const HostNaN& nan) {
  using S = typename E::Storage;
  constexpr uint64_t P = kVectorBytes / sizeof(S);
  const uint64_t first = first_thread(), stride = thread_count();
  uint4* bv = reinterpret_cast<uint4*>(buf + s.head);
  for (uint64_t p = first; p < s.packs; p += 2 * stride) {
    const uint64_t q = p + stride;
    const bool second = q < s.packs;
    Pack<S> x[2] = {};
    x[0].bits = bv[p];
    if (second) x[1].bits = bv[q];
#pragma unroll
    for (uint64_t k = 0; k < P; ++k) x[0].v[k] = E::store(divide_by(E::load(x[0].v[k]), divisor, nan));
    bv[p] = x[0].bits;
    if (second) {
#pragma unroll
      for (uint64_t k = 0; k < P; ++k) x[1].v[k] = E::store(divide_by(E::load(x[1].v[k]), divisor, nan));
      bv[q] = x[1].bits;
    }
  }
  const uint64_t body_end = s.head + s.packs * P;
  const uint64_t scalars = s.count - s.packs * P;
  for (uint64_t k = first; k < scalars; k += stride) {
    const uint64_t i = scalar_index(s, k, body_end);
    buf[i] = E::store(divide_by(E::load(buf[i]), divisor, nan));
  }
}

}  // namespace

// ---- entry points: one per type x operator, named as kernel_abi.h says ----------------------

#define RINGLINK_FOR_EACH_TYPE(X)                                                                  \
  X(f32, Native<float>)                                                                            \
  X(f64, Native<double>)                                                                           \
  X(f16, Half)                                                                                     \
  X(bf16, BFloat16)                                                                                \
  X(i8, Native<int8_t>)                                                                            \
  X(u8, Native<uint8_t>)                                                                           \
  X(i32, Native<int32_t>)                                                                          \
  X(i64, Native<int64_t>)

#define RINGLINK_COMBINE(tname, E, oname, Op)                                                       \
  extern "C" __global__ void __launch_bounds__(kThreadsPerBlock) ringlink_combine_##tname##_##oname( \
      E::Storage* dst, const E::Storage* a, const E::Storage* b, Span span, HostNaN nan) {            \
    combine_span<E>(dst, a, b, span, Op{nan});                                                      \
  }

#define RINGLINK_TYPE_KERNELS(tname, E)                                                             \
  RINGLINK_COMBINE(tname, E, sum, Sum)                                                              \
  RINGLINK_COMBINE(tname, E, prod, Prod)                                                            \
  RINGLINK_COMBINE(tname, E, min, Min)                                                              \
  RINGLINK_COMBINE(tname, E, max, Max)                                                              \
  extern "C" __global__ void __launch_bounds__(kThreadsPerBlock) ringlink_divide_##tname(           \
      E::Storage* buf, Span span, int divisor, HostNaN nan) {                                       \
    divide_span<E>(buf, span, divisor, nan);                                                        \
  }

RINGLINK_FOR_EACH_TYPE(RINGLINK_TYPE_KERNELS)

}  // namespace ringlink::reduce::cuda::device
