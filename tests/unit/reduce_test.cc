// Reduction kernels against scalar references, for every type and op, at lengths that exercise
// the vector body and the scalar tail; 16-bit float conversions and their rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "reduce/reduce.h"

using namespace ringlink;
namespace rr = ringlink::reduce;

namespace {

TEST(HalfConversion, ExactValuesRoundTrip) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f /* min normal */,
                  5.960464477539063e-08f /* min subnormal */, 0.333251953125f})
    EXPECT_EQ(rr::half_to_float(rr::float_to_half(f)), f) << f;
  EXPECT_EQ(rr::float_to_half(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(rr::float_to_half(70000.0f), 0x7C00) << "overflow rounds to infinity";
  EXPECT_TRUE(std::isnan(rr::half_to_float(rr::float_to_half(std::nanf("")))));
}

TEST(HalfConversion, RoundsToNearestEven) {
  // 1 + 2^-11 is exactly halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
  EXPECT_EQ(rr::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even): goes up.
  EXPECT_EQ(rr::float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above halfway rounds up.
  EXPECT_EQ(rr::float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
}

TEST(BFloat16Conversion, RoundsToNearestEven) {
  EXPECT_EQ(rr::float_to_bfloat16(1.0f), 0x3F80);
  EXPECT_EQ(rr::bfloat16_to_float(0x3F80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(rr::float_to_bfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(rr::float_to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(rr::bfloat16_to_float(rr::float_to_bfloat16(std::nanf("")))));
}

double apply(double a, double b, ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return a + b;
    case ReduceOp::Prod: return a * b;
    case ReduceOp::Min: return std::min(a, b);
    case ReduceOp::Max: return std::max(a, b);
  }
  return 0;
}

template <typename T>
void check_typed(DataType t, ReduceOp op, size_t n) {
  std::mt19937 rng(static_cast<unsigned>(n * 31 + static_cast<int>(op)));
  std::vector<T> a(n), b(n), out(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      a[i] = static_cast<T>(std::uniform_real_distribution<double>(-4, 4)(rng));
      b[i] = static_cast<T>(std::uniform_real_distribution<double>(-4, 4)(rng));
    } else {
      a[i] = static_cast<T>(rng() % 100);
      b[i] = static_cast<T>(rng() % 100);
    }
  }
  rr::combine(out.data(), a.data(), b.data(), n, t, op);
  for (size_t i = 0; i < n; ++i) {
    T want;
    if constexpr (std::is_floating_point_v<T>) {
      want = static_cast<T>(apply(a[i], b[i], op));
    } else {
      using U = std::make_unsigned_t<T>;
      if (op == ReduceOp::Sum || op == ReduceOp::Avg) want = static_cast<T>(static_cast<U>(a[i]) + static_cast<U>(b[i]));
      else if (op == ReduceOp::Prod) want = static_cast<T>(static_cast<U>(a[i]) * static_cast<U>(b[i]));
      else want = static_cast<T>(apply(static_cast<double>(a[i]), static_cast<double>(b[i]), op));
    }
    ASSERT_EQ(out[i], want) << to_string(t) << " " << to_string(op) << " n=" << n << " i=" << i;
  }
  // In place into the second operand (the engine's receive buffer) gives the same.
  std::vector<T> b2 = b;
  rr::combine(b2.data(), a.data(), b2.data(), n, t, op);
  // memcmp is undefined for the null data() of empty vectors, even for 0 bytes.
  if (n > 0) {
    ASSERT_EQ(0, std::memcmp(b2.data(), out.data(), n * sizeof(T)));
  }
}

void check_16bit(DataType t, ReduceOp op, size_t n) {
  auto to_f = t == DataType::Float16 ? rr::half_to_float : rr::bfloat16_to_float;
  auto from_f = t == DataType::Float16 ? rr::float_to_half : rr::float_to_bfloat16;
  std::mt19937 rng(static_cast<unsigned>(n + 7));
  std::vector<uint16_t> a(n), b(n), out(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = from_f(std::uniform_real_distribution<float>(-4, 4)(rng));
    b[i] = from_f(std::uniform_real_distribution<float>(-4, 4)(rng));
  }
  rr::combine(out.data(), a.data(), b.data(), n, t, op);
  for (size_t i = 0; i < n; ++i) {
    // Reduced in float32, rounded once to nearest even.
    uint16_t want = from_f(static_cast<float>(apply(to_f(a[i]), to_f(b[i]), op)));
    ASSERT_EQ(out[i], want) << to_string(t) << " " << to_string(op) << " i=" << i;
  }
}

TEST(Combine, EveryTypeAndOpMatchesScalar) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{33}, size_t{1000}}) {
    for (ReduceOp op : kAllReduceOps) {
      check_typed<float>(DataType::Float32, op, n);
      check_typed<double>(DataType::Float64, op, n);
      check_typed<int8_t>(DataType::Int8, op, n);
      check_typed<uint8_t>(DataType::UInt8, op, n);
      check_typed<int32_t>(DataType::Int32, op, n);
      check_typed<int64_t>(DataType::Int64, op, n);
      check_16bit(DataType::Float16, op, n);
      check_16bit(DataType::BFloat16, op, n);
    }
  }
}

TEST(Combine, SignedIntegersWrapAround) {
  int32_t a = std::numeric_limits<int32_t>::max(), b = 1, out = 0;
  rr::combine(&out, &a, &b, 1, DataType::Int32, ReduceOp::Sum);
  EXPECT_EQ(out, std::numeric_limits<int32_t>::min());
}

TEST(Combine, MinAndMaxPropagateNaN) {
  float nan = std::nanf(""), one = 1.0f, out = 0;
  for (ReduceOp op : {ReduceOp::Min, ReduceOp::Max}) {
    rr::combine(&out, &nan, &one, 1, DataType::Float32, op);
    EXPECT_TRUE(std::isnan(out));
    rr::combine(&out, &one, &nan, 1, DataType::Float32, op);
    EXPECT_TRUE(std::isnan(out));
  }
}

TEST(Divide, AveragesPerType) {
  float f[3] = {3, 6, -9};
  rr::divide(f, 3, DataType::Float32, 3);
  EXPECT_EQ(f[0], 1);
  EXPECT_EQ(f[2], -3);
  int32_t i[2] = {7, -7};
  rr::divide(i, 2, DataType::Int32, 2);
  EXPECT_EQ(i[0], 3) << "integer averages truncate toward zero";
  EXPECT_EQ(i[1], -3);
  uint16_t h = rr::float_to_half(3.0f);
  rr::divide(&h, 1, DataType::Float16, 2);
  EXPECT_EQ(rr::half_to_float(h), 1.5f);
}

}  // namespace
