// Compressed wire formats (RINGLINK_WIRE_DTYPE): a float32 allreduce or reduce_scatter that
// carries bf16 or fp16 stays within the bound docs/collectives.md derives against a float64
// reference, gives bitwise identical results on every rank, and leaves integers exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "multirank/reference.h"
#include "multirank/world.h"

using namespace ringlink;
using namespace ringlink::testing;

namespace {

// The communicator of a wire format and chunk size (0: the default), made the first time a test
// needs it, on every rank in the same order.
Communicator& comm(WireDtype w, size_t chunk_bytes) {
  static std::map<std::pair<WireDtype, size_t>, std::unique_ptr<Communicator>> comms;
  auto& c = comms[{w, chunk_bytes}];
  if (!c) {
    Options o = Options::from_environment();
    o.wire_dtype = w;
    if (chunk_bytes) o.chunk_bytes = chunk_bytes;
    c = std::make_unique<Communicator>(o);
  }
  return *c;
}

double unit_roundoff(WireDtype w) { return w == WireDtype::BF16 ? 0x1p-8 : 0x1p-11; }
// Half the spacing of the format's subnormals: the absolute error of one rounding near zero.
double subnormal_half_step(WireDtype w) { return w == WireDtype::BF16 ? 0x1p-134 : 0x1p-25; }

// Rank r's element i: in [-1, 1], with a few large elements (a sum's relative error is
// measured against the sum of magnitudes); near 1 for prod, so the product stays in range.
float value(int rank, size_t i, ReduceOp op, uint64_t salt) {
  const uint64_t h = mix(salt * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(rank) * 0x632BE59BD9B4E019ull + i);
  const double unit = static_cast<double>(h >> 11) * 0x1.0p-53 * 2.0 - 1.0;
  if (op == ReduceOp::Prod) return static_cast<float>(1.0 + 0.25 * unit);
  return static_cast<float>(i % 97 == 0 ? 1000.0 * unit : unit);
}

// The documented bound on |result - exact| for element i (docs/collectives.md, "Compressed
// wire formats"), from the float64 reference's terms.
double bound(ReduceOp op, int n, WireDtype w, double sum_abs, double exact) {
  const double u = unit_roundoff(w) + 0x1p-24, c = 1.05;
  switch (op) {
    case ReduceOp::Sum: return c * n * (u * sum_abs + subnormal_half_step(w));
    case ReduceOp::Avg: return c * (u * sum_abs + subnormal_half_step(w)) + subnormal_half_step(w);
    case ReduceOp::Prod: return c * n * u * std::fabs(exact);
    case ReduceOp::Min:
    case ReduceOp::Max: return unit_roundoff(w) * std::fabs(exact) + subnormal_half_step(w);
  }
  return 0;
}

uint64_t hash_bytes(const void* p, size_t bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < bytes; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 0x100000001b3ull;
  return h;
}

// Every rank's hash of `result`, gathered on the plain world communicator: all must be equal.
void expect_same_bits_everywhere(const std::vector<float>& result, const std::string& what) {
  const int n = world().size();
  uint64_t mine = hash_bytes(result.data(), result.size() * sizeof(float));
  std::vector<uint64_t> all(static_cast<size_t>(n));
  world().allgather(&mine, all.data(), 1, DataType::Int64);
  for (int r = 0; r < n; ++r) EXPECT_EQ(all[static_cast<size_t>(r)], all[0]) << what << ": rank " << r << " differs";
}

struct WireCase {
  WireDtype wire;
  ReduceOp op;
  size_t count;
  size_t chunk_bytes;  // 0: the default
  bool in_place;
};

void run_allreduce(const WireCase& k) {
  Communicator& c = comm(k.wire, k.chunk_bytes);
  const int me = c.rank(), n = c.size();
  static uint64_t salt = 100;
  ++salt;
  std::vector<float> in(k.count), out(k.count, -12345.0f);
  for (size_t i = 0; i < k.count; ++i) in[i] = value(me, i, k.op, salt);
  if (k.in_place) {
    out = in;
    c.allreduce(out.data(), out.data(), k.count, DataType::Float32, k.op);
  } else {
    c.allreduce(in.data(), out.data(), k.count, DataType::Float32, k.op);
  }
  const std::string what = fmt::format("allreduce {} {} count={} chunk={} {} over {} ranks", to_string(k.wire),
                                       to_string(k.op), k.count, k.chunk_bytes, k.in_place ? "in place" : "out of place", n);
  size_t wrong = 0;
  double worst = 0;  // largest error / bound
  for (size_t i = 0; i < k.count; ++i) {
    double exact = k.op == ReduceOp::Prod ? 1.0 : 0.0, sum_abs = 0;
    for (int r = 0; r < n; ++r) {
      const double x = value(r, i, k.op, salt);
      sum_abs += std::fabs(x);
      switch (k.op) {
        case ReduceOp::Sum:
        case ReduceOp::Avg: exact += x; break;
        case ReduceOp::Prod: exact *= x; break;
        case ReduceOp::Min: exact = r == 0 ? x : std::min(exact, x); break;
        case ReduceOp::Max: exact = r == 0 ? x : std::max(exact, x); break;
      }
    }
    if (k.op == ReduceOp::Avg) exact /= n;
    const double err = std::fabs(static_cast<double>(out[i]) - exact), b = bound(k.op, n, k.wire, sum_abs, exact);
    worst = std::max(worst, b > 0 ? err / b : 0.0);
    if (!(err <= b) && wrong++ < 3)
      ADD_FAILURE() << what << ": element " << i << " is " << out[i] << ", exact " << exact << ", bound " << b;
    // One rank: nothing goes on the wire, the result is the input.
    if (n == 1) {
      ASSERT_EQ(out[i], in[i]) << what;
    }
  }
  EXPECT_EQ(wrong, 0u) << what;
  if (k.count >= 50000) std::printf("rank %d: %s: largest error %.3f of the bound\n", me, what.c_str(), worst);
  expect_same_bits_everywhere(out, what);
}

class WireAllreduce : public ::testing::TestWithParam<WireCase> {};

TEST_P(WireAllreduce, WithinTheBoundAndIdenticalOnEveryRank) { run_allreduce(GetParam()); }

std::vector<WireCase> wire_cases() {
  std::vector<WireCase> cases;
  for (WireDtype w : {WireDtype::BF16, WireDtype::FP16})
    for (ReduceOp op : kAllReduceOps) {
      // 4 KiB chunks: many chains in flight, slots reused; the default chunk: whole segments.
      for (size_t count : {size_t{1}, size_t{7}, size_t{1000}, size_t{50000}})
        cases.push_back({w, op, count, 4096, count == 1000});
      cases.push_back({w, op, 300000, 0, false});
    }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(All, WireAllreduce, ::testing::ValuesIn(wire_cases()), [](const auto& info) {
  const WireCase& k = info.param;
  return fmt::format("{}_{}_{}_{}{}", to_string(k.wire), to_string(k.op), k.count, k.chunk_bytes ? "chunk4k" : "default",
                     k.in_place ? "_inplace" : "");
});

// reduce_scatter shares the ring's reduce half: each rank's block within the same bound.
TEST(WireReduceScatter, WithinTheBound) {
  for (WireDtype w : {WireDtype::BF16, WireDtype::FP16}) {
    Communicator& c = comm(w, 4096);
    const int me = c.rank(), n = c.size();
    const size_t block = 20000;
    std::vector<float> in(block * static_cast<size_t>(n)), out(block, -1.0f);
    for (size_t i = 0; i < in.size(); ++i) in[i] = value(me, i, ReduceOp::Sum, 7);
    c.reduce_scatter(in.data(), out.data(), block, DataType::Float32, ReduceOp::Sum);
    for (size_t i = 0; i < block; ++i) {
      const size_t g = static_cast<size_t>(me) * block + i;
      double exact = 0, sum_abs = 0;
      for (int r = 0; r < n; ++r) {
        exact += value(r, g, ReduceOp::Sum, 7);
        sum_abs += std::fabs(value(r, g, ReduceOp::Sum, 7));
      }
      const double b = bound(ReduceOp::Sum, n, w, sum_abs, exact);
      ASSERT_LE(std::fabs(out[i] - exact), b) << to_string(w) << " element " << i;
    }
  }
}

// Integers never go through a 16-bit format: their sums stay exact with the format set.
TEST(WireFormatLeavesOthersAlone, IntegersStayExact) {
  Communicator& c = comm(WireDtype::BF16, 4096);
  const int me = c.rank(), n = c.size();
  const size_t count = 30000;
  std::vector<int32_t> in32(count), out32(count);
  std::vector<int64_t> in64(count), out64(count);
  // Values a 16-bit float cannot hold: any rounding on the way would show.
  for (size_t i = 0; i < count; ++i) {
    in32[i] = static_cast<int32_t>(1000003 * (me + 1) + i);
    in64[i] = (int64_t{1} << 40) + static_cast<int64_t>(me) * 7919 + static_cast<int64_t>(i);
  }
  c.allreduce(in32.data(), out32.data(), count, DataType::Int32, ReduceOp::Sum);
  c.allreduce(in64.data(), out64.data(), count, DataType::Int64, ReduceOp::Sum);
  for (size_t i = 0; i < count; ++i) {
    int64_t want32 = 0, want64 = 0;
    for (int r = 0; r < n; ++r) {
      want32 += 1000003 * (r + 1) + static_cast<int64_t>(i);
      want64 += (int64_t{1} << 40) + static_cast<int64_t>(r) * 7919 + static_cast<int64_t>(i);
    }
    ASSERT_EQ(out32[i], static_cast<int32_t>(want32)) << "int32 element " << i;
    ASSERT_EQ(out64[i], want64) << "int64 element " << i;
  }
}

// A vector recursive doubling carries whole is latency-bound: it goes exact with a format set,
// bitwise as without one.
TEST(WireFormatLeavesOthersAlone, SmallAllreducesStayExact) {
  Communicator& with = comm(WireDtype::BF16, 0);
  Communicator& without = comm(WireDtype::Off, 0);
  const int me = with.rank();
  for (size_t count : {size_t{1}, size_t{2}, size_t{100}}) {
    std::vector<float> in(count), a(count), b(count);
    // 1 + 2^-20 and its like: bf16 (8 significant bits) cannot hold them.
    for (size_t i = 0; i < count; ++i) in[i] = 1.0f + 0x1p-20f * static_cast<float>(me + 1 + i);
    with.allreduce(in.data(), a.data(), count, DataType::Float32, ReduceOp::Sum);
    without.allreduce(in.data(), b.data(), count, DataType::Float32, ReduceOp::Sum);
    for (size_t i = 0; i < count; ++i) ASSERT_EQ(a[i], b[i]) << "count " << count << ", element " << i;
  }
}

// float64 is not compressed either: it carries values no float32, let alone bf16, holds.
TEST(WireFormatLeavesOthersAlone, Float64KeepsItsPrecision) {
  Communicator& c = comm(WireDtype::BF16, 4096);
  const int n = c.size();
  const size_t count = 5000;
  std::vector<double> in(count), out(count);
  for (size_t i = 0; i < count; ++i) in[i] = 1.0 + 0x1p-40 * static_cast<double>(i);  // exact sums for n <= 8
  c.allreduce(in.data(), out.data(), count, DataType::Float64, ReduceOp::Sum);
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(out[i], n * in[i]) << "element " << i;
}

}  // namespace
