// Inputs every rank can compute for every other rank, and the reference result of a reduction
// over them, so each rank checks its result locally.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "reduce/reduce.h"
#include "ringlink/types.h"

namespace ringlink::testing {

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// Unit roundoff of the type.
inline double epsilon(DataType t) {
  switch (t) {
    case DataType::Float32: return std::ldexp(1.0, -24);
    case DataType::Float64: return std::ldexp(1.0, -53);
    case DataType::Float16: return std::ldexp(1.0, -11);
    case DataType::BFloat16: return std::ldexp(1.0, -8);
    default: return 0;
  }
}

// Element i of `rank`'s input as a double (already representable in the type).
inline double input_value(DataType t, int rank, size_t i, uint64_t salt) {
  uint64_t h = mix(salt * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(rank) * 0x632BE59BD9B4E019ull + i);
  switch (t) {
    case DataType::Float32: return static_cast<float>((static_cast<double>(h >> 11) * 0x1.0p-53) * 2.0 - 1.0);
    case DataType::Float64: return (static_cast<double>(h >> 11) * 0x1.0p-53) * 2.0 - 1.0;
    case DataType::Float16:
      return reduce::half_to_float(reduce::float_to_half(static_cast<float>((h >> 11) * 0x1.0p-53 * 2.0 - 1.0)));
    case DataType::BFloat16:
      return reduce::bfloat16_to_float(reduce::float_to_bfloat16(static_cast<float>((h >> 11) * 0x1.0p-53 * 2.0 - 1.0)));
    case DataType::Int8: return static_cast<double>(static_cast<int>(h % 17) - 8);
    case DataType::UInt8: return static_cast<double>(h % 9);
    case DataType::Int32: return static_cast<double>(static_cast<int64_t>(h % 2001) - 1000);
    case DataType::Int64: return static_cast<double>(static_cast<int64_t>(h % 200001) - 100000);
  }
  return 0;
}

inline void store(DataType t, std::byte* buf, size_t i, double v) {
  switch (t) {
    case DataType::Float32: reinterpret_cast<float*>(buf)[i] = static_cast<float>(v); break;
    case DataType::Float64: reinterpret_cast<double*>(buf)[i] = v; break;
    case DataType::Float16: reinterpret_cast<uint16_t*>(buf)[i] = reduce::float_to_half(static_cast<float>(v)); break;
    case DataType::BFloat16:
      reinterpret_cast<uint16_t*>(buf)[i] = reduce::float_to_bfloat16(static_cast<float>(v));
      break;
    case DataType::Int8: reinterpret_cast<int8_t*>(buf)[i] = static_cast<int8_t>(v); break;
    case DataType::UInt8: reinterpret_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(v); break;
    case DataType::Int32: reinterpret_cast<int32_t*>(buf)[i] = static_cast<int32_t>(v); break;
    case DataType::Int64: reinterpret_cast<int64_t*>(buf)[i] = static_cast<int64_t>(v); break;
  }
}

inline double load(DataType t, const std::byte* buf, size_t i) {
  switch (t) {
    case DataType::Float32: return reinterpret_cast<const float*>(buf)[i];
    case DataType::Float64: return reinterpret_cast<const double*>(buf)[i];
    case DataType::Float16: return reduce::half_to_float(reinterpret_cast<const uint16_t*>(buf)[i]);
    case DataType::BFloat16: return reduce::bfloat16_to_float(reinterpret_cast<const uint16_t*>(buf)[i]);
    case DataType::Int8: return reinterpret_cast<const int8_t*>(buf)[i];
    case DataType::UInt8: return reinterpret_cast<const uint8_t*>(buf)[i];
    case DataType::Int32: return reinterpret_cast<const int32_t*>(buf)[i];
    case DataType::Int64: return static_cast<double>(reinterpret_cast<const int64_t*>(buf)[i]);
  }
  return 0;
}

inline void fill_input(DataType t, std::byte* buf, size_t count, int rank, uint64_t salt, size_t first_index = 0) {
  for (size_t i = 0; i < count; ++i) store(t, buf, i, input_value(t, rank, first_index + i, salt));
}

// Integer reduction with the engine's wrap-around semantics, in the type's width.
template <typename T>
T wrap_combine(T a, T b, ReduceOp op) {
  using U = std::make_unsigned_t<T>;
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    case ReduceOp::Prod: return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
    case ReduceOp::Min: return a < b ? a : b;
    case ReduceOp::Max: return a > b ? a : b;
  }
  return a;
}

template <typename T>
double int_reference(int n, const double* v, size_t stride, ReduceOp op) {
  T acc = static_cast<T>(v[0]);
  for (int r = 1; r < n; ++r) acc = wrap_combine(acc, static_cast<T>(v[r * stride]), op);
  if (op == ReduceOp::Avg) acc = static_cast<T>(acc / static_cast<T>(n));
  return static_cast<double>(acc);
}

struct Expected {
  double value;
  double tolerance;  // 0: must match exactly
};

// The reduction over ranks of one element; rank r's value is v[r * stride].
inline Expected reference(DataType t, ReduceOp op, int n, const double* v, size_t stride) {
  switch (t) {
    case DataType::Int8: return {int_reference<int8_t>(n, v, stride, op), 0};
    case DataType::UInt8: return {int_reference<uint8_t>(n, v, stride, op), 0};
    case DataType::Int32: return {int_reference<int32_t>(n, v, stride, op), 0};
    case DataType::Int64: return {int_reference<int64_t>(n, v, stride, op), 0};
    default: break;
  }
  // Floats: exact reduction in double; the engine's result must be within the error bound of a
  // sequence of n-1 roundings in the type (plus the final rounding, and the division for avg).
  double acc = v[0], abs_sum = std::fabs(acc);
  for (int r = 1; r < n; ++r) {
    double x = v[r * stride];
    abs_sum += std::fabs(x);
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Avg: acc += x; break;
      case ReduceOp::Prod: acc *= x; break;
      case ReduceOp::Min: acc = std::min(acc, x); break;
      case ReduceOp::Max: acc = std::max(acc, x); break;
    }
  }
  double eps = epsilon(t);
  // Results in the subnormal range lose absolute precision: up to half a subnormal step per rounding.
  double subnormal_step = t == DataType::Float16    ? std::ldexp(1.0, -24)
                          : t == DataType::BFloat16 ? std::ldexp(1.0, -133)
                          : t == DataType::Float32  ? std::ldexp(1.0, -149)
                                                    : std::ldexp(1.0, -1074);
  double tiny = n * subnormal_step;
  switch (op) {
    case ReduceOp::Sum: return {acc, (n + 1) * eps * abs_sum + tiny};
    case ReduceOp::Avg: return {acc / n, ((n + 1) * eps * abs_sum) / n + 2 * eps * std::fabs(acc / n) + tiny};
    case ReduceOp::Prod: return {acc, (2 * n + 1) * eps * std::fabs(acc) + tiny};
    default: return {acc, 0};
  }
}

inline uint64_t fnv1a(const std::byte* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 1099511628211ull;
  return h;
}

}  // namespace ringlink::testing
