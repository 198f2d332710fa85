// What one benchmark run measures and writes: the command line of every tool, parsed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <ringlink/types.h>

#include "bench/bench.h"

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
  bool device_cuda = false;  // --device cuda: the buffers are CUDA device memory (collectives)
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

}  // namespace ringlink::bench
