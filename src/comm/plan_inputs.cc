#include "comm/plan_inputs.h"

#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "bootstrap/wire.h"

namespace ringlink::detail {

std::string encode(const PlanInputs& p) {
  return wire::Writer()
      .u8(static_cast<uint8_t>(p.algorithm))
      .u64(p.chunk_bytes)
      .f64(p.model.latency_us)
      .f64(p.model.bandwidth_gbps)
      .f64(p.model.reduce_gbps)
      .f64(p.model.rd_max_bytes)
      .take();
}

PlanInputs decode_plan_inputs(std::string_view bytes) {
  wire::Reader r(bytes);
  PlanInputs p;
  uint8_t algorithm = r.u8();
  if (algorithm > static_cast<uint8_t>(Algorithm::Tree)) throw wire::FormatError(fmt::format("algorithm {}", algorithm));
  p.algorithm = static_cast<Algorithm>(algorithm);
  uint64_t chunk = r.u64();
  if (chunk < 256 || chunk > (1ull << 30)) throw wire::FormatError(fmt::format("chunk of {} bytes", chunk));
  p.chunk_bytes = static_cast<size_t>(chunk);
  // The estimates divide by the rates: those must be positive, the others at least zero.
  for (double* v : {&p.model.latency_us, &p.model.bandwidth_gbps, &p.model.reduce_gbps, &p.model.rd_max_bytes}) {
    *v = r.f64();
    bool rate = v == &p.model.bandwidth_gbps || v == &p.model.reduce_gbps;
    if (!std::isfinite(*v) || *v < 0 || (rate && *v == 0)) throw wire::FormatError(fmt::format("cost constant {}", *v));
  }
  r.expect_end();
  return p;
}

std::string describe(const PlanInputs& p) {
  return fmt::format("algorithm {}, chunk {} bytes, latency {} us, bandwidth {} GB/s, reduce {} GB/s, "
                     "recursive doubling up to {} bytes",
                     to_string(p.algorithm), p.chunk_bytes, p.model.latency_us, p.model.bandwidth_gbps,
                     p.model.reduce_gbps, p.model.rd_max_bytes);
}

}  // namespace ringlink::detail
