// Results and their three renderings: the nccl-tests table on stdout, CSV and JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ringlink/types.h>

#include "bench/bench.h"
#include "bench/sweep.h"

namespace ringlink::bench {

struct ModeResult {
  double time_us = 0;  // per iteration, aggregated over ranks (see Config::average)
  Bandwidth bw;
  int64_t wrong = -1;  // -1: not checked
  int iters = 0;
};

struct Row {
  size_t bytes = 0;   // the "size" column
  size_t count = 0;   // the "count" column (nccl conventions)
  ModeResult oop;     // out of place
  ModeResult ip;      // in place
  // p2p only
  int window = 0;
  double p2p_gbps = 0;    // streaming bandwidth
  double latency_us = 0;  // half round trip
  int64_t p2p_wrong = -1;
  int bw_iters = 0, lat_iters = 0;
};

struct RunInfo {
  std::string tool;       // "ringlink-bench", "gloo-bench", "mpi-bench"
  std::string library;
  std::string transport;
  std::string algorithm;
  std::string wire = "off";  // Backend::wire_format()
  std::string label;      // a name for plots and comparisons
  std::string host;
  int ranks = 0;
  Collective coll = Collective::AllReduce;
  DataType type = DataType::Float32;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  bool check = true;
  int iters = 0, warmup = 0;
  size_t min_bytes = 0, max_bytes = 0;
  std::vector<Row> rows;
};

// Formats a time the way nccl-tests does: 2 decimals below 100 us, 1 below 10 ms, then 0.
std::string format_time_us(double us);

// Table pieces, each returned as text ending in '\n' (or the row's cells without it).
std::string table_header(const RunInfo& info);
std::string table_row(const RunInfo& info, const Row& row);
// "# Out of bounds values : N OK" and "# Avg bus bandwidth    : X".
std::string table_footer(const RunInfo& info);

double average_busbw(const RunInfo& info);  // over every measured cell, as nccl-tests
int64_t total_wrong(const RunInfo& info);   // -1 counts as 0

std::string to_csv(const RunInfo& info);
std::string to_json(const RunInfo& info);

// Writes `text` to `path`; throws std::runtime_error naming the path on failure.
void write_file(const std::string& path, const std::string& text);

}  // namespace ringlink::bench
