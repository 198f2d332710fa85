// The plan inputs rank 0 publishes: what encode() writes decodes to the same values, and
// anything else is refused before a rank plans with it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "bootstrap/wire.h"
#include "comm/plan_inputs.h"

using namespace ringlink;
using ringlink::detail::decode_plan_inputs;
using ringlink::detail::PlanInputs;

namespace {

PlanInputs sample() {
  PlanInputs p;
  p.algorithm = Algorithm::Tree;
  p.chunk_bytes = 512 * 1024;
  p.model.latency_us = 4.5;
  p.model.bandwidth_gbps = 2.9;
  p.model.reduce_gbps = 11.25;
  p.model.rd_max_bytes = 65536;
  return p;
}

std::string with(uint8_t algorithm, uint64_t chunk, double latency, double bandwidth, double reduce, double rd) {
  return wire::Writer().u8(algorithm).u64(chunk).f64(latency).f64(bandwidth).f64(reduce).f64(rd).take();
}

TEST(PlanInputs, RoundTrip) {
  PlanInputs p = decode_plan_inputs(encode(sample()));
  EXPECT_EQ(p.algorithm, Algorithm::Tree);
  EXPECT_EQ(p.chunk_bytes, 512u * 1024);
  EXPECT_EQ(p.model.latency_us, 4.5);
  EXPECT_EQ(p.model.bandwidth_gbps, 2.9);
  EXPECT_EQ(p.model.reduce_gbps, 11.25);
  EXPECT_EQ(p.model.rd_max_bytes, 65536);
  EXPECT_EQ(encode(p), encode(sample()));
}

TEST(PlanInputs, MalformedOrOutOfRangeIsRefused) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::string good = encode(sample());
  for (const std::string& bad : {
           std::string(),                          // nothing
           good.substr(0, good.size() - 1),        // truncated
           good + "x",                             // trailing bytes
           with(3, 1 << 19, 1, 1, 1, 1),           // no such algorithm
           with(0, 255, 1, 1, 1, 1),               // chunk too small
           with(0, (1ull << 30) + 1, 1, 1, 1, 1),  // chunk too large
           with(0, 1 << 19, nan, 1, 1, 1),         // not a number
           with(0, 1 << 19, 1, inf, 1, 1),         // infinite
           with(0, 1 << 19, 1, 0, 1, 1),           // a zero rate (the estimates divide by it)
           with(0, 1 << 19, 1, 1, -1, 1),          // negative
       })
    EXPECT_THROW(decode_plan_inputs(bad), wire::FormatError) << bad.size() << " bytes";
  EXPECT_NO_THROW(decode_plan_inputs(with(0, 1 << 19, 0, 1, 1, 0)));  // zero latency and limit are fine
}

}  // namespace
