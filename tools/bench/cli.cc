// The shared command line: nccl-tests' flags, sizes through the library's byte-size parser.
#include "bench/cli.h"

#include <algorithm>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/byte_size.h"

namespace ringlink::bench {

void add_common_options(CLI::App& app, Config& cfg) {
  auto size_option = [&app](const std::string& name, size_t& target, const std::string& help) {
    app.add_option_function<std::string>(
           name,
           [&target, name](const std::string& v) {
             auto s = parse_byte_size(v);
             if (!s) throw CLI::ValidationError(name, "'" + v + "' is not a size (examples: 8, 64K, 1M, 2G)");
             target = *s;
           },
           help)
        ->type_name("SIZE");
  };
  auto coll_setter = [&cfg](const std::string& v) {
    auto c = parse_collective(v);
    if (!c)
      throw CLI::ValidationError("collective",
                                 "'" + v + "' is not one of allreduce, broadcast, reduce, allgather, reduce_scatter, p2p");
    cfg.coll = *c;
  };
  app.add_option_function<std::string>("collective", coll_setter,
                                       "allreduce (default), broadcast, reduce, allgather, reduce_scatter or p2p")
      ->type_name("COLLECTIVE");
  app.add_option_function<std::string>("--collective", coll_setter, "the collective, as the positional argument")
      ->type_name("COLLECTIVE");
  size_option("-b,--minbytes", cfg.min_bytes, "smallest message in bytes, K/M/G suffixes (default 32M)");
  size_option("-e,--maxbytes", cfg.max_bytes, "largest message in bytes (default 32M)");
  size_option("-i,--stepbytes", cfg.step, "increment between sizes when -f is 1 (default 1M)");
  app.add_option_function<std::string>(
         "--sizes",
         [&cfg](const std::string& v) {
           cfg.sizes.clear();
           size_t start = 0;
           while (start <= v.size()) {
             const size_t comma = std::min(v.find(',', start), v.size());
             const std::string item = v.substr(start, comma - start);
             auto s = parse_byte_size(item);
             if (!s) throw CLI::ValidationError("sizes", "'" + item + "' is not a size");
             cfg.sizes.push_back(*s);
             start = comma + 1;
           }
         },
         "an explicit comma-separated list of sizes (instead of -b/-e/-f)")
      ->type_name("LIST");
  app.add_option("-f,--stepfactor", cfg.factor, "multiply the size by this factor between steps (default 1: use -i)")
      ->check(CLI::Range(0.0, 1024.0));
  app.add_option("-n,--iters", cfg.iters, "timed iterations per size (default 20)")->check(CLI::Range(1, 100000000));
  app.add_option("-w,--warmup_iters", cfg.warmup, "warm-up iterations per size (default 5)")
      ->check(CLI::Range(0, 100000000));
  app.add_option_function<int>(
         "-c,--check", [&cfg](int v) { cfg.check = v != 0; }, "verify every element (1, default) or not (0)")
      ->type_name("0/1");
  app.add_option_function<std::string>(
         "-d,--datatype",
         [&cfg](const std::string& v) {
           auto t = parse_data_type(v);
           if (!t)
             throw CLI::ValidationError("datatype",
                                        "'" + v + "' is not one of float, double, half, bfloat16, int8, uint8, int32, int64");
           cfg.type = *t;
         },
         "element type: float (default), double, half, bfloat16, int8, uint8, int32, int64")
      ->type_name("TYPE");
  app.add_option_function<std::string>(
         "-o,--op",
         [&cfg](const std::string& v) {
           auto o = parse_reduce_op(v);
           if (!o) throw CLI::ValidationError("op", "'" + v + "' is not one of sum, prod, min, max, avg");
           cfg.op = *o;
         },
         "reduction: sum (default), prod, min, max, avg")
      ->type_name("OP");
  app.add_option_function<std::string>(
         "--device", [&cfg](const std::string& v) { cfg.device_cuda = v == "cuda"; },
         "where the collectives' buffers live: host (default) or cuda (device 0; checked through host copies)")
      ->check(CLI::IsMember({"host", "cuda"}));
  app.add_option("-r,--root", cfg.root, "root rank of broadcast and reduce (default 0)")->check(CLI::NonNegativeNumber);
  app.add_option("-a,--average", cfg.average, "time reported over ranks: 0 rank 0, 1 mean (default), 2 min, 3 max")
      ->check(CLI::Range(0, 3));
  app.add_option("--min-time", cfg.min_time,
                 "raise -n where a size would take less than this many seconds (judged from the warm-up; 0 = off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-time", cfg.max_time,
                 "lower -n where a size would take more than this many seconds (judged from the warm-up; 0 = off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--window", cfg.window, "p2p: messages in flight per burst (default 64)")->check(CLI::Range(1, 1 << 20));
  size_option("--window-bytes", cfg.window_bytes, "p2p: at most this many bytes per burst, one message at least (default 64M)");
  app.add_flag("--bidir", cfg.bidir,
               "p2p: ranks 0 and 1 stream to each other at once; bandwidth is the sum of both directions");
  app.add_option("--lat-iters", cfg.lat_iters,
                 "p2p: ping-pong round trips per size (default: max(-n, 1000) up to 64 KiB, else -n)")
      ->check(CLI::Range(0, 100000000));
  app.add_option("--csv", cfg.csv, "also write the results as CSV to this file (rank 0)")->type_name("FILE");
  app.add_option("--json", cfg.json, "also write the results as JSON to this file (rank 0)")->type_name("FILE");
  app.add_option("--plot", cfg.plot, "draw busbw against size into this PNG (runs ringlink-plot; rank 0)")
      ->type_name("FILE.png");
  app.add_option("--label", cfg.label, "name of this run in the CSV/JSON and in plots (default: library and transport)");
  app.add_flag("-q,--quiet", cfg.quiet, "do not print the table (files are still written)");
}

void finish_config(Config& cfg) {
  if (!cfg.sizes.empty()) {
    cfg.min_bytes = *std::min_element(cfg.sizes.begin(), cfg.sizes.end());
    cfg.max_bytes = *std::max_element(cfg.sizes.begin(), cfg.sizes.end());
  }
  if (cfg.min_bytes > cfg.max_bytes)
    throw CLI::ValidationError("sizes", fmt::format("minbytes {} is above maxbytes {}", cfg.min_bytes, cfg.max_bytes));
  if (cfg.factor <= 1 && cfg.step == 0 && cfg.min_bytes != cfg.max_bytes)
    throw CLI::ValidationError("sizes", "a step of 0 bytes needs -f above 1");
  if (cfg.max_bytes > (size_t{1} << 40)) throw CLI::ValidationError("maxbytes", "more than 1 TiB per buffer");
}

std::optional<int> parse_command_line(CLI::App& app, Config& cfg, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    finish_config(cfg);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}

}  // namespace ringlink::bench
