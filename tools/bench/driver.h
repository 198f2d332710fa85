// The measurement loop shared by every tool: buffers allocated and touched once at the largest
// size, warm-up, timed iterations, out of place then in place, verification, the table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <ringlink/types.h>

#include "bench/bench.h"
#include "bench/report.h"

namespace CLI {
class App;
}

namespace ringlink::bench {

struct Config {
  Collective coll = Collective::AllReduce;
  // Sizes in bytes; nccl-tests' defaults (one 32 MiB size) unless given.
  size_t min_bytes = 32u << 20;
  size_t max_bytes = 32u << 20;
  double factor = 1;         // -f: multiply by this (> 1) ...
  size_t step = 1u << 20;    // -i: ... or else add this
  std::vector<size_t> sizes; // --sizes: an explicit list instead of the sweep
  int iters = 20;            // -n
  int warmup = 5;            // -w, per size and mode
  bool check = true;         // -c
  DataType type = DataType::Float32;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  int average = 1;           // -a: time over ranks: 0 rank 0, 1 mean, 2 min, 3 max
  // Adaptive iteration counts (0 = off): scale -n so each measurement takes at least / at most
  // about this many seconds, judged from the warm-up (needs -w >= 1).
  double min_time = 0;
  double max_time = 0;
  // p2p
  int window = 64;                  // messages in flight per burst
  size_t window_bytes = 64u << 20;  // ... but at most this many bytes per burst (at least one message)
  int lat_iters = 0;                // ping-pong round trips; 0 = max(-n, 1000) up to 64 KiB, else -n
  bool bidir = false;               // both ranks stream at once; bandwidth is the sum of both ways
  // outputs
  std::string csv, json, label;
  std::string plot;    // --plot: a PNG drawn by ringlink-plot from the JSON
  bool quiet = false;  // table only on rank 0 anyway; this drops the table, keeping the files
};

// Registers the options every tool shares (-b -e -f -i -n -w -c -d -o -r -a, --csv, --json, ...).
// The collective is a positional argument or --collective. Validation happens in finish_config.
void add_common_options(CLI::App& app, Config& cfg);
// Checks what CLI11 cannot (sizes, type/op names already parsed); throws CLI::ValidationError.
void finish_config(Config& cfg);

// Thrown by run_benchmark when the library cannot run the requested combination, after rank 0
// printed the reason; tools exit with status 3, so scripts can tell "not supported" from a failure.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};
inline constexpr int kExitUnsupported = 3;

// Runs the sweep described by `cfg` on `backend` and prints the table on rank 0. Returns the
// results (identical on every rank). Throws on library errors.
RunInfo run_benchmark(Backend& backend, const Config& cfg, const std::string& tool);

// The exit status for a finished run: 0, or 1 when any element was wrong.
int exit_status(const RunInfo& info);

// Page-aligned host memory, touched once when allocated.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  void* data() const { return data_; }
  unsigned char* bytes() const { return static_cast<unsigned char*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ringlink::bench
