// What the host launcher and the device kernels agree on: the kernels' names and the layout of
// their parameters. Plain C++, included by both nvcc (kernels.cu) and g++ (launcher.cc), so the
// structs passed through cuLaunchKernel have one definition.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringlink::reduce::cuda {

// Threads per block of every kernel (kernels.cu declares it in __launch_bounds__).
inline constexpr unsigned kThreadsPerBlock = 256;
// Bytes one thread moves per load in the vector body.
inline constexpr size_t kVectorBytes = 16;

// How `count` elements split: `head` scalar elements up to the first 16-byte boundary that all
// pointers share, `packs` 16-byte packs, then a scalar tail (count - head - packs * P, P elements
// per pack). Pointers that do not share their offset within 16 bytes get head = count, packs = 0.
struct Span {
  uint64_t count;
  uint64_t head;
  uint64_t packs;
};

// The NaN the host's arithmetic makes from non-NaN operands (inf - inf, 0 * inf): the GPU
// makes its own canonical NaN there, so the launcher passes the host's bits to keep results
// identical (x86: 0xFFC00000 / 0xFFF8000000000000).
struct HostNaN {
  uint64_t f64;
  uint32_t f32;
  uint32_t unused;
};

// Kernel names: ringlink_combine_<type>_<op> (op: sum, prod, min, max; Avg runs sum and then
// ringlink_divide_<type>). Types: f32 f64 f16 bf16 i8 u8 i32 i64.
//   combine: (T* dst, const T* a, const T* b, Span span, HostNaN nan)
//   divide:  (T* buf, Span span, int divisor, HostNaN nan)

}  // namespace ringlink::reduce::cuda
