// The compressed wire formats' conversions (src/reduce/wire_format.h): rounding to nearest
// even, NaN and infinity, fp16 subnormals and overflow, and the bulk (vectorised) forms
// agreeing bit for bit with the scalar conversions at every length.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "reduce/reduce.h"
#include "reduce/wire_format.h"

namespace rr = ringlink::reduce;
using ringlink::ReduceOp;
using ringlink::WireDtype;

namespace {

uint16_t enc(float f, WireDtype w) {
  uint16_t h = 0;
  rr::encode(&h, &f, 1, w);
  return h;
}
float dec(uint16_t h, WireDtype w) {
  float f = 0;
  rr::decode(&f, &h, 1, w);
  return f;
}
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Values that exercise every path: ties, subnormals, overflow, NaN payloads, signs.
std::vector<float> awkward_values(size_t n) {
  std::mt19937 rng(7);
  std::vector<float> v;
  const float inf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, -0.0f, 1.0f, -1.0f, inf, -inf, std::nanf(""), 65504.0f, 65519.0f, 65520.0f, 1e-8f, 6e-8f,
                  3e-5f, 1.0f + std::ldexp(1.0f, -8), 1.0f + std::ldexp(1.0f, -11), 3.4e38f})
    v.push_back(f);
  while (v.size() < n) v.push_back(from_bits(static_cast<uint32_t>(rng())));
  return v;
}

}  // namespace

TEST(WireFormat, BFloat16RoundsToNearestEven) {
  constexpr auto w = WireDtype::BF16;
  EXPECT_EQ(enc(1.0f, w), 0x3F80);
  EXPECT_EQ(enc(1.0f + std::ldexp(1.0f, -8), w), 0x3F80) << "tie goes to the even mantissa";
  EXPECT_EQ(enc(1.0f + 3 * std::ldexp(1.0f, -8), w), 0x3F82) << "tie from an odd mantissa goes up";
  EXPECT_EQ(enc(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20), w), 0x3F81) << "above the tie rounds up";
  EXPECT_EQ(enc(-1.0f, w), 0xBF80);
  // The largest float rounds past bf16's largest finite value to infinity.
  EXPECT_EQ(enc(std::numeric_limits<float>::max(), w), 0x7F80);
  EXPECT_EQ(enc(std::numeric_limits<float>::infinity(), w), 0x7F80);
  EXPECT_EQ(enc(-std::numeric_limits<float>::infinity(), w), 0xFF80);
  // A NaN stays a NaN (quiet), even one whose payload lies only in the dropped bits.
  EXPECT_TRUE(std::isnan(dec(enc(from_bits(0x7F800001u), w), w)));
  EXPECT_TRUE(std::isnan(dec(enc(std::nanf(""), w), w)));
  EXPECT_EQ(dec(0x3F81, w), 1.0f + std::ldexp(1.0f, -7));
}

TEST(WireFormat, Float16RoundsSubnormalsOverflowAndNaN) {
  constexpr auto w = WireDtype::FP16;
  EXPECT_EQ(enc(1.0f, w), 0x3C00);
  EXPECT_EQ(enc(1.0f + std::ldexp(1.0f, -11), w), 0x3C00) << "tie goes to the even mantissa";
  EXPECT_EQ(enc(1.0f + 3 * std::ldexp(1.0f, -11), w), 0x3C02);
  EXPECT_EQ(enc(65504.0f, w), 0x7BFF) << "largest finite half";
  EXPECT_EQ(enc(65519.0f, w), 0x7BFF) << "below the tie with infinity";
  EXPECT_EQ(enc(65520.0f, w), 0x7C00) << "the tie with infinity overflows";
  EXPECT_EQ(enc(-1e6f, w), 0xFC00);
  // Subnormals: multiples of 2^-24; halfway cases go to the even multiple.
  EXPECT_EQ(enc(std::ldexp(1.0f, -24), w), 0x0001);
  EXPECT_EQ(enc(std::ldexp(1.0f, -25), w), 0x0000) << "half of the smallest subnormal ties to zero";
  EXPECT_EQ(enc(3 * std::ldexp(1.0f, -25), w), 0x0002) << "1.5 units ties to 2";
  EXPECT_EQ(enc(-std::ldexp(1.0f, -24), w), 0x8001);
  EXPECT_EQ(dec(0x0001, w), std::ldexp(1.0f, -24));
  EXPECT_EQ(dec(0x03FF, w), 1023 * std::ldexp(1.0f, -24));
  EXPECT_EQ(enc(std::ldexp(1.0f, -14), w), 0x0400) << "smallest normal";
  EXPECT_TRUE(std::isnan(dec(enc(std::nanf(""), w), w)));
  EXPECT_TRUE(std::isinf(dec(0x7C00, w)));
}

// Every length (the vector body and its scalar tail) and every awkward value: the bulk forms
// give exactly what the scalar conversions of reduce.h give.
TEST(WireFormat, BulkConversionsMatchTheScalarOnes) {
  const std::vector<float> v = awkward_values(4099);
  for (auto w : {WireDtype::BF16, WireDtype::FP16}) {
    auto scalar_enc = w == WireDtype::BF16 ? rr::float_to_bfloat16 : rr::float_to_half;
    auto scalar_dec = w == WireDtype::BF16 ? rr::bfloat16_to_float : rr::half_to_float;
    for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{1023}, size_t{1025}, v.size()}) {
      std::vector<uint16_t> h(n);
      rr::encode(h.data(), v.data(), n, w);
      std::vector<float> back(n);
      rr::decode(back.data(), h.data(), n, w);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(h[i], scalar_enc(v[i])) << to_string(w) << " element " << i << " of " << n << ": " << v[i];
        ASSERT_EQ(bits(back[i]), bits(scalar_dec(h[i]))) << to_string(w) << " element " << i;
      }
    }
  }
}

TEST(WireFormat, FusedHopsDecodeReduceInFloat32AndEncode) {
  const size_t n = 2500;  // more than one block, with a tail
  std::vector<float> local(n), partial(n);
  for (size_t i = 0; i < n; ++i) {
    local[i] = 0.1f * static_cast<float>(i) - 7.0f;
    partial[i] = 3.0f - 0.01f * static_cast<float>(i);
  }
  for (auto w : {WireDtype::BF16, WireDtype::FP16}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Min, ReduceOp::Max, ReduceOp::Avg}) {
      std::vector<uint16_t> wire(n);
      rr::encode(wire.data(), partial.data(), n, w);
      std::vector<float> out(n);
      rr::combine_from_wire(out.data(), local.data(), wire.data(), n, w, op);
      std::vector<uint16_t> hop = wire;
      rr::combine_into_wire(hop.data(), local.data(), n, w, op);
      for (size_t i = 0; i < n; ++i) {
        float b = dec(wire[i], w);
        float expect = op == ReduceOp::Prod  ? local[i] * b
                       : op == ReduceOp::Min ? std::min(local[i], b)
                       : op == ReduceOp::Max ? std::max(local[i], b)
                                             : local[i] + b;
        ASSERT_EQ(out[i], expect) << "element " << i;
        ASSERT_EQ(hop[i], enc(expect, w)) << "element " << i;
      }
    }
    // The last hop: reduce, divide (avg over 3 ranks here), round once; slot and result agree.
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      std::vector<uint16_t> slot(n);
      rr::encode(slot.data(), partial.data(), n, w);
      const std::vector<uint16_t> received = slot;
      std::vector<float> out(n);
      rr::complete_from_wire(out.data(), local.data(), slot.data(), n, w, op, op == ReduceOp::Avg ? 3 : 1);
      for (size_t i = 0; i < n; ++i) {
        const float b = dec(received[i], w);
        float r = op == ReduceOp::Max ? std::max(local[i], b) : local[i] + b;
        if (op == ReduceOp::Avg) r /= 3.0f;
        ASSERT_EQ(slot[i], enc(r, w)) << "element " << i;
        ASSERT_EQ(bits(out[i]), bits(dec(slot[i], w))) << "element " << i;
      }
    }
    std::vector<float> r = partial;
    rr::round_through_wire(r.data(), n, w);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(r[i], dec(enc(partial[i], w), w));
      ASSERT_LE(std::fabs(r[i] - partial[i]), std::fabs(partial[i]) * (w == WireDtype::BF16 ? 0x1p-8f : 0x1p-11f));
    }
  }
}
