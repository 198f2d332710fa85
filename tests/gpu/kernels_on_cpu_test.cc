// The GPU kernels' source (src/reduce/cuda/kernels.cu) compiled for the CPU against a model of
// the CUDA built-ins (device_emulation.h) and run thread by thread over the grid the launcher
// would use: checks, without a GPU, the kernels' logic — the span split, the vector body and
// scalar ends, aliasing, integer wrap-around, the 16-bit conversions and the NaN rules that make
// results equal to the host kernels'. What the model cannot show (the hardware's own conversion
// and arithmetic results, real concurrency) is left to gpu-reduce on a GPU.
#include "device_emulation.h"  // first: the built-ins kernels.cu expects

#include "reduce/cuda/kernels.cu"  // its #pragma unroll: -Wno-unknown-pragmas (meson.build)

#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reduce/cuda/launch_plan.h"
#include "test_values.h"

using namespace ringlink;
using namespace ringlink::testing;
namespace rc = ringlink::reduce::cuda;

namespace {

constexpr int kMultiprocessors = 2;  // a small grid: the grid-stride loops take many turns

rc::HostNaN host_nan() {
  volatile float fi = std::numeric_limits<float>::infinity();
  volatile double di = std::numeric_limits<double>::infinity();
  const float f = fi - fi;
  const double d = di - di;
  rc::HostNaN nan{};
  std::memcpy(&nan.f32, &f, 4);
  std::memcpy(&nan.f64, &d, 8);
  return nan;
}

// Runs `kernel` for every thread of the grid, one after another.
template <typename... Params, typename... Args>
void run_grid(unsigned blocks, void (*kernel)(Params...), Args... args) {
  gridDim.x = blocks;
  blockDim.x = rc::kThreadsPerBlock;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < rc::kThreadsPerBlock; ++t) {
      blockIdx.x = b;
      threadIdx.x = t;
      kernel(args...);
    }
}

template <typename S>
using Combine = void (*)(S*, const S*, const S*, rc::Span, rc::HostNaN);
template <typename S>
using Divide = void (*)(S*, rc::Span, int, rc::HostNaN);

template <typename S>
struct TypeKernels {
  Combine<S> combine[4];  // sum, prod, min, max
  Divide<S> divide;
};

#define RINGLINK_KERNELS_OF(tname)                                                       \
  {{rc::device::ringlink_combine_##tname##_sum, rc::device::ringlink_combine_##tname##_prod, \
    rc::device::ringlink_combine_##tname##_min, rc::device::ringlink_combine_##tname##_max}, \
   rc::device::ringlink_divide_##tname}

const TypeKernels<float> kF32 = RINGLINK_KERNELS_OF(f32);
const TypeKernels<double> kF64 = RINGLINK_KERNELS_OF(f64);
const TypeKernels<uint16_t> kF16 = RINGLINK_KERNELS_OF(f16);
const TypeKernels<uint16_t> kBF16 = RINGLINK_KERNELS_OF(bf16);
const TypeKernels<int8_t> kI8 = RINGLINK_KERNELS_OF(i8);
const TypeKernels<uint8_t> kU8 = RINGLINK_KERNELS_OF(u8);
const TypeKernels<int32_t> kI32 = RINGLINK_KERNELS_OF(i32);
const TypeKernels<int64_t> kI64 = RINGLINK_KERNELS_OF(i64);

size_t op_slot(ReduceOp op) {
  switch (op) {
    case ReduceOp::Prod: return 1;
    case ReduceOp::Min: return 2;
    case ReduceOp::Max: return 3;
    default: return 0;
  }
}

template <typename S>
void emulate_divide(const TypeKernels<S>& k, void* buf, size_t n, int divisor) {
  const auto at = reinterpret_cast<uintptr_t>(buf);
  const rc::Span span = rc::plan_span(at, at, at, n, sizeof(S));
  run_grid(rc::blocks_for(span, sizeof(S), kMultiprocessors), k.divide, static_cast<S*>(buf), span, divisor,
           host_nan());
}

// What the launcher does for one call, with the emulated grid instead of cuLaunchKernel.
template <typename S>
void emulate(const TypeKernels<S>& k, void* dst, const void* a, const void* b, size_t n, ReduceOp op, int divisor) {
  const auto at = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  const rc::Span span = rc::plan_span(at(dst), at(a), at(b), n, sizeof(S));
  if (n) {
    run_grid(rc::blocks_for(span, sizeof(S), kMultiprocessors), k.combine[op_slot(op)], static_cast<S*>(dst),
             static_cast<const S*>(a), static_cast<const S*>(b), span, host_nan());
  }
  if (op == ReduceOp::Avg && n && divisor != 1) emulate_divide(k, dst, n, divisor);
}

void emulate_divide(DataType t, void* buf, size_t n, int divisor) {
  switch (t) {
    case DataType::Float32: return emulate_divide(kF32, buf, n, divisor);
    case DataType::Float64: return emulate_divide(kF64, buf, n, divisor);
    case DataType::Float16: return emulate_divide(kF16, buf, n, divisor);
    case DataType::BFloat16: return emulate_divide(kBF16, buf, n, divisor);
    case DataType::Int8: return emulate_divide(kI8, buf, n, divisor);
    case DataType::UInt8: return emulate_divide(kU8, buf, n, divisor);
    case DataType::Int32: return emulate_divide(kI32, buf, n, divisor);
    case DataType::Int64: return emulate_divide(kI64, buf, n, divisor);
  }
}

void emulate(DataType t, void* dst, const void* a, const void* b, size_t n, ReduceOp op, int divisor) {
  switch (t) {
    case DataType::Float32: return emulate(kF32, dst, a, b, n, op, divisor);
    case DataType::Float64: return emulate(kF64, dst, a, b, n, op, divisor);
    case DataType::Float16: return emulate(kF16, dst, a, b, n, op, divisor);
    case DataType::BFloat16: return emulate(kBF16, dst, a, b, n, op, divisor);
    case DataType::Int8: return emulate(kI8, dst, a, b, n, op, divisor);
    case DataType::UInt8: return emulate(kU8, dst, a, b, n, op, divisor);
    case DataType::Int32: return emulate(kI32, dst, a, b, n, op, divisor);
    case DataType::Int64: return emulate(kI64, dst, a, b, n, op, divisor);
  }
}

TEST(KernelsOnCpu, EveryTypeAndOpMatchesTheHostKernelsBitwise) {
  std::mt19937_64 rng(2024);
  constexpr int kRanks = 3;
  for (DataType t : kAllDataTypes) {
    const size_t w = size_of(t);
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{100}, (size_t{1} << 20) + 3}) {
      const auto a = random_elements(t, n, rng), b = random_elements(t, n, rng);
      for (ReduceOp op : kAllReduceOps) {
        std::vector<std::byte> want(n * w);
        reduce::combine(want.data(), a.data(), b.data(), n, t, op);
        if (op == ReduceOp::Avg) reduce::divide(want.data(), n, t, kRanks);
        const bool arithmetic = op != ReduceOp::Min && op != ReduceOp::Max;
        for (const Layout& layout : kLayouts) {
          // 16-byte aligned storage, the operands placed at their offsets.
          std::vector<uint4> sa(n * w / 16 + 3), sb(n * w / 16 + 3), sd(n * w / 16 + 3);
          std::byte* pa = reinterpret_cast<std::byte*>(sa.data()) + layout.a_offset * w;
          std::byte* pb = reinterpret_cast<std::byte*>(sb.data()) + layout.b_offset * w;
          std::memcpy(pa, a.data(), n * w);
          std::memcpy(pb, b.data(), n * w);
          std::byte* dst = layout.dst_is == 1   ? pa
                           : layout.dst_is == 2 ? pb
                                                : reinterpret_cast<std::byte*>(sd.data()) + layout.dst_offset * w;
          emulate(t, dst, pa, pb, n, op, kRanks);
          size_t wrong = 0, first = 0;
          for (size_t i = 0; i < n; ++i) {
            bool same = std::memcmp(dst + i * w, want.data() + i * w, w) == 0;
            // Of two NaN operands, which one the host returns is its compiler's choice.
            if (!same && arithmetic && is_nan_bits(t, a.data() + i * w) && is_nan_bits(t, b.data() + i * w))
              same = is_nan_bits(t, dst + i * w) && is_nan_bits(t, want.data() + i * w);
            if (!same && wrong++ == 0) first = i;
          }
          EXPECT_EQ(wrong, 0u) << to_string(t) << " " << to_string(op) << " n=" << n << " " << layout.name
                               << ", first at " << first;
        }
      }
    }
  }
}

TEST(KernelsOnCpu, DivideMatchesTheHostBitwise) {
  std::mt19937_64 rng(99);
  for (DataType t : kAllDataTypes) {
    const size_t w = size_of(t), n = 4099;
    const auto data = random_elements(t, n, rng);
    for (int divisor : {2, 3, 7, 300, 65539}) {
      for (size_t offset : {size_t{0}, size_t{1}}) {
        std::vector<uint4> storage(n * w / 16 + 3);
        std::byte* p = reinterpret_cast<std::byte*>(storage.data()) + offset * w;
        std::memcpy(p, data.data(), n * w);
        std::vector<std::byte> want = data;
        reduce::divide(want.data(), n, t, divisor);
        emulate_divide(t, p, n, divisor);
        EXPECT_EQ(std::memcmp(p, want.data(), n * w), 0) << to_string(t) << " / " << divisor << " offset " << offset;
      }
    }
  }
}

// The NaN rules one by one, in float32: an input NaN comes out quieted with its payload (a's
// first), a NaN made from numbers is the host's, Min/Max return the NaN operand untouched.
TEST(KernelsOnCpu, NaNsComeOutAsOnTheHost) {
  const auto f = [](uint32_t u) { return __uint_as_float(u); };
  const float snan = f(0x7F800123u), qnan_neg = f(0xFFC00456u), inf = f(0x7F800000u), ninf = f(0xFF800000u);
  const float a[] = {snan, 1.0f, qnan_neg, inf, 0.0f, snan, 2.0f, -0.0f};
  const float b[] = {1.0f, snan, 3.0f, ninf, inf, 5.0f, qnan_neg, 0.0f};
  for (ReduceOp op : kAllReduceOps) {
    float want[8], got[8];
    reduce::combine(want, a, b, 8, DataType::Float32, op);
    emulate(DataType::Float32, got, a, b, 8, op, 1);
    for (int i = 0; i < 8; ++i)
      EXPECT_EQ(__float_as_uint(got[i]), __float_as_uint(want[i])) << to_string(op) << " element " << i;
  }
}

}  // namespace
