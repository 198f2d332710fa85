// The measurement loop shared by every tool: buffers allocated and touched once at the largest
// size, warm-up, timed iterations, out of place then in place, verification, the table.
#pragma once

#include <stdexcept>
#include <string>

#include "bench/bench.h"
#include "bench/config.h"
#include "bench/report.h"

namespace ringlink::bench {

// Thrown by run_benchmark when the library cannot run the requested combination, after rank 0
// printed the reason; tools exit with status 3, so scripts can tell "not supported" from a failure.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};
inline constexpr int kExitUnsupported = 3;

// Runs the sweep described by `cfg` on `backend` and prints the table on rank 0; rank 0 also
// writes the CSV, JSON and plot asked for. Returns the results (identical on every rank).
// Throws on library errors.
RunInfo run_benchmark(Backend& backend, const Config& cfg, const std::string& tool);

// The exit status for a finished run: 0, or 1 when any element was wrong.
int exit_status(const RunInfo& info);

}  // namespace ringlink::bench
