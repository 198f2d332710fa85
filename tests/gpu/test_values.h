// Test inputs for the GPU reductions: random elements of every type that reach the corners
// (NaN payloads quiet and signalling, infinities, signed zeros, subnormals, overflow), shared by
// the GPU test and the CPU run of the kernels' source, and the buffer layouts both try.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "reduce/reduce.h"
#include "ringlink/types.h"

namespace ringlink::testing {

inline bool is_nan_bits(DataType t, const std::byte* p) {
  uint64_t u = 0;
  std::memcpy(&u, p, size_of(t));
  switch (t) {
    case DataType::Float32: return (u & 0x7FFFFFFFu) > 0x7F800000u;
    case DataType::Float64: return (u & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull;
    case DataType::Float16: return (u & 0x7FFFu) > 0x7C00u;
    case DataType::BFloat16: return (u & 0x7FFFu) > 0x7F80u;
    default: return false;
  }
}

// Values that find the corners: signed zeros, infinities, NaNs quiet and signalling with
// payloads, the smallest and largest subnormals and normals, the largest finite value.
inline std::vector<uint64_t> special_values(DataType t) {
  switch (t) {
    case DataType::Float32:
      return {0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0xFF812345,
              0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0x33800000};
    case DataType::Float64:
      return {0x0ull, 0x8000000000000000ull, 0x7FF0000000000000ull, 0xFFF0000000000000ull, 0x7FF8000000000000ull,
              0x7FF0000000000001ull, 0xFFF4000000000abcull, 0x0000000000000001ull, 0x800FFFFFFFFFFFFFull,
              0x0010000000000000ull, 0x7FEFFFFFFFFFFFFFull, 0xFFEFFFFFFFFFFFFFull, 0x3FF0000000000000ull};
    case DataType::Float16:
      return {0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0xFD55, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
              0x3C00, 0x3C01};
    case DataType::BFloat16:
      return {0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0xFFA5, 0x0001, 0x807F, 0x0080, 0x7F7F, 0xFF7F,
              0x3F80, 0x3F81};
    default: return {};
  }
}

// Elements of `t`: for floats an eighth special values, three eighths arbitrary bit patterns
// and half ordinary values in [-4, 4) (where sums round); for integers arbitrary bits (so sums
// and products overflow).
inline std::vector<std::byte> random_elements(DataType t, size_t n, std::mt19937_64& rng) {
  const size_t w = size_of(t);
  std::vector<std::byte> out(n * w);
  const auto specials = special_values(t);
  std::uniform_real_distribution<double> ordinary(-4.0, 4.0);
  for (size_t i = 0; i < n; ++i) {
    uint64_t bits = rng();
    if (!specials.empty()) {
      const unsigned pick = static_cast<unsigned>(rng() % 8);
      if (pick == 0) {
        bits = specials[rng() % specials.size()];
      } else if (pick >= 4) {
        const double v = ordinary(rng);
        if (t == DataType::Float32) {
          float f = static_cast<float>(v);
          std::memcpy(&bits, &f, 4);
        } else if (t == DataType::Float64) {
          std::memcpy(&bits, &v, 8);
        } else if (t == DataType::Float16) {
          bits = reduce::float_to_half(static_cast<float>(v));
        } else {
          bits = reduce::float_to_bfloat16(static_cast<float>(v));
        }
      }
    }
    std::memcpy(out.data() + i * w, &bits, w);  // little endian: the low bytes
  }
  return out;
}

// Where the operands and the result sit, in elements from the start of their buffers.
struct Layout {
  const char* name;
  size_t a_offset, b_offset, dst_offset;
  int dst_is;  // 0: its own buffer, 1: a, 2: b
};
inline constexpr Layout kLayouts[] = {
    {"aligned", 0, 0, 0, 0},
    {"in place into a", 0, 0, 0, 1},
    {"in place into b", 0, 0, 0, 2},
    {"same misalignment", 1, 1, 1, 0},
    {"different misalignments", 1, 3, 2, 0},
    {"in place, a misaligned against b", 1, 0, 1, 1},
};

}  // namespace ringlink::testing
