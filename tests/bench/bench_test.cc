// The benchmark core without a network: flag parsing (sizes go through the library's parser,
// tested in tests/unit/byte_size_test.cc), the nccl-tests arithmetic, the verification of every
// collective (and that corrupted results are counted), and the whole driver run by threads that
// play ranks through a reference in-memory Backend.
#include <gtest/gtest.h>

#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/data.h"
#include "bench/cli.h"
#include "bench/report.h"
#include "bench/runner.h"
#include "bench/sweep.h"

using namespace ringlink;
using namespace ringlink::bench;

// ---- sizes and flags ----------------------------------------------------------------------

TEST(Sizes, FormatsShortest) {
  EXPECT_EQ(format_size(8), "8");
  EXPECT_EQ(format_size(65536), "64K");
  EXPECT_EQ(format_size(3u << 20), "3M");
  EXPECT_EQ(format_size(1536), "1536");
  EXPECT_EQ(format_size(0), "0");
}

TEST(Sizes, SweepByFactorStopsAtMax) {
  auto s = sweep_sizes(8, 256u << 20, 4, 0);
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.front(), 8u);
  EXPECT_EQ(s.back(), 128u << 20);  // 8 * 4^12; the next step would pass 256M
  EXPECT_EQ(s.size(), 13u);
  for (size_t i = 1; i < s.size(); ++i) EXPECT_EQ(s[i], s[i - 1] * 4);
}

TEST(Sizes, SweepByStepAndSingle) {
  EXPECT_EQ(sweep_sizes(1u << 20, 4u << 20, 1, 1u << 20),
            (std::vector<size_t>{1u << 20, 2u << 20, 3u << 20, 4u << 20}));
  EXPECT_EQ(sweep_sizes(64, 64, 2, 0), (std::vector<size_t>{64}));
  EXPECT_TRUE(sweep_sizes(128, 64, 2, 0).empty());
  EXPECT_EQ(sweep_sizes(0, 4, 2, 0), (std::vector<size_t>{0, 1, 2, 4}));
}

namespace {
Config parse(std::vector<std::string> args) {
  CLI::App app;
  Config cfg;
  add_common_options(app, cfg);
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector back to front
  app.parse(args);
  finish_config(cfg);
  return cfg;
}
}  // namespace

TEST(Flags, NcclTestsSpelling) {
  Config c = parse({"-b", "8", "-e", "256M", "-f", "4", "-d", "half", "-o", "max", "-c", "0", "-n", "3", "-w",
                    "1", "-r", "1", "-a", "3"});
  EXPECT_EQ(c.coll, Collective::AllReduce);
  EXPECT_EQ(c.min_bytes, 8u);
  EXPECT_EQ(c.max_bytes, 256u << 20);
  EXPECT_EQ(c.factor, 4);
  EXPECT_EQ(c.type, DataType::Float16);
  EXPECT_EQ(c.op, ReduceOp::Max);
  EXPECT_FALSE(c.check);
  EXPECT_EQ(c.iters, 3);
  EXPECT_EQ(c.warmup, 1);
  EXPECT_EQ(c.root, 1);
  EXPECT_EQ(c.average, 3);
}

TEST(Flags, LongNamesAndCollective) {
  Config c = parse({"reduce_scatter", "--minbytes", "1K", "--maxbytes", "1M", "--stepfactor", "2", "--datatype",
                    "bf16", "--op", "avg", "--check", "1", "--csv", "out.csv", "--json", "out.json"});
  EXPECT_EQ(c.coll, Collective::ReduceScatter);
  EXPECT_EQ(c.min_bytes, 1024u);
  EXPECT_EQ(c.type, DataType::BFloat16);
  EXPECT_EQ(c.op, ReduceOp::Avg);
  EXPECT_TRUE(c.check);
  EXPECT_EQ(c.csv, "out.csv");
  EXPECT_EQ(c.json, "out.json");
  EXPECT_EQ(parse({"--collective", "p2p"}).coll, Collective::P2P);
  EXPECT_EQ(parse({"all_gather"}).coll, Collective::AllGather);
  EXPECT_EQ(parse({"sendrecv"}).coll, Collective::P2P);
}

TEST(Flags, ExplicitSizeList) {
  Config c = parse({"--sizes", "8,64K,256M"});
  EXPECT_EQ(c.sizes, (std::vector<size_t>{8, 65536, 256u << 20}));
  EXPECT_EQ(c.min_bytes, 8u);
  EXPECT_EQ(c.max_bytes, 256u << 20);
  EXPECT_THROW(parse({"--sizes", "8,,16"}), CLI::ParseError);
}

TEST(Flags, RejectsBadValues) {
  EXPECT_THROW(parse({"-b", "1X"}), CLI::ParseError);
  EXPECT_THROW(parse({"-d", "float128"}), CLI::ParseError);
  EXPECT_THROW(parse({"-o", "xor"}), CLI::ParseError);
  EXPECT_THROW(parse({"alltoall"}), CLI::ParseError);
  EXPECT_THROW(parse({"-b", "1M", "-e", "1K"}), CLI::ParseError);
  EXPECT_THROW(parse({"-n", "0"}), CLI::ParseError);
  EXPECT_THROW(parse({"-a", "7"}), CLI::ParseError);
}

// What a tool's main does with argv: run (nullopt), or exit with CLI11's status.
TEST(Flags, CommandLineOfATool) {
  auto run = [](std::vector<std::string> words, Config& cfg) {
    CLI::App app;
    add_common_options(app, cfg);
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    return parse_command_line(app, cfg, static_cast<int>(argv.size()), argv.data());
  };
  Config cfg;
  EXPECT_EQ(run({"tool", "broadcast", "-b", "1K", "-e", "4K", "-f", "2"}, cfg), std::nullopt);
  EXPECT_EQ(cfg.coll, Collective::Broadcast);
  EXPECT_EQ(cfg.min_bytes, 1024u);
  EXPECT_EQ(cfg.max_bytes, 4096u);
  Config help;
  EXPECT_EQ(run({"tool", "--help"}, help), 0);
  Config bad_size, bad_range;
  const auto bad = run({"tool", "-b", "1X"}, bad_size);
  ASSERT_TRUE(bad.has_value());
  EXPECT_NE(*bad, 0);
  const auto inverted = run({"tool", "-b", "1M", "-e", "1K"}, bad_range);  // caught by finish_config
  ASSERT_TRUE(inverted.has_value());
  EXPECT_NE(*inverted, 0);
}

// ---- nccl-tests arithmetic ----------------------------------------------------------------

TEST(Arithmetic, BusBandwidthFactors) {
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::AllReduce, 2), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::AllReduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::AllReduce, 8), 1.75);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::AllGather, 4), 0.75);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::ReduceScatter, 2), 0.5);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::Broadcast, 8), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::Reduce, 8), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::P2P, 2), 1.0);
}

TEST(Arithmetic, AlgAndBusBandwidth) {
  // allreduce: 1e9 bytes in 1 s on 4 ranks: algbw 1, busbw 1.5.
  Bandwidth b = bandwidth(Collective::AllReduce, 250000000, 4, 1.0, 4);
  EXPECT_DOUBLE_EQ(b.algbw, 1.0);
  EXPECT_DOUBLE_EQ(b.busbw, 1.5);
  // allgather: 1000 floats per rank, 4 ranks, 1 us: 16000 bytes -> 16 GB/s algbw, 12 busbw.
  b = bandwidth(Collective::AllGather, 1000, 4, 1e-6, 4);
  EXPECT_NEAR(b.algbw, 16.0, 1e-9);
  EXPECT_NEAR(b.busbw, 12.0, 1e-9);
  // reduce_scatter counts per rank too.
  b = bandwidth(Collective::ReduceScatter, 1000, 4, 1e-6, 2);
  EXPECT_NEAR(b.algbw, 8.0, 1e-9);
  EXPECT_NEAR(b.busbw, 4.0, 1e-9);
  b = bandwidth(Collective::Broadcast, 1000, 8, 1e-6, 3);
  EXPECT_NEAR(b.algbw, 8.0, 1e-9);
  EXPECT_NEAR(b.busbw, 8.0, 1e-9);
}

TEST(Arithmetic, LayoutsFollowNcclTests) {
  Layout l = layout_for(Collective::AllGather, 10, 3);
  EXPECT_EQ(l.send_count, 3u);
  EXPECT_EQ(l.recv_count, 9u);
  EXPECT_EQ(l.param_count, 3u);
  EXPECT_EQ(l.send_inplace_offset, 3u);
  EXPECT_EQ(l.recv_inplace_offset, 0u);
  EXPECT_EQ(reported_bytes(l, 4), 36u);
  l = layout_for(Collective::ReduceScatter, 10, 3);
  EXPECT_EQ(l.send_count, 9u);
  EXPECT_EQ(l.recv_count, 3u);
  EXPECT_EQ(l.param_count, 3u);
  EXPECT_EQ(l.send_inplace_offset, 0u);
  EXPECT_EQ(l.recv_inplace_offset, 3u);
  l = layout_for(Collective::AllReduce, 10, 3);
  EXPECT_EQ(l.param_count, 10u);
  EXPECT_EQ(reported_bytes(l, 2), 20u);
}

TEST(Report, TimeFormatAndRow) {
  EXPECT_EQ(format_time_us(12.345), "  12.35");
  EXPECT_EQ(format_time_us(123.45), "  123.5");
  EXPECT_EQ(format_time_us(12345.6), "  12346");
  RunInfo info;
  info.coll = Collective::AllReduce;
  Row r;
  r.bytes = 8;
  r.count = 2;
  r.oop = {14.52, {0.0, 0.0}, 0, 20};
  r.ip = {13.89, {0.0, 0.0}, 0, 20};
  EXPECT_EQ(table_row(info, r),
            "           8             2     float     sum      -1    14.52    0.00    0.00      0    13.89    0.00    0.00      0");
  info.rows.push_back(r);
  EXPECT_NE(table_footer(info).find("# Out of bounds values : 0 OK"), std::string::npos);
  EXPECT_NE(table_footer(info).find("# Avg bus bandwidth    : 0"), std::string::npos);
  info.coll = Collective::Broadcast;
  info.root = 1;
  EXPECT_NE(table_row(info, r).find("    none       1"), std::string::npos);
}

TEST(Report, CsvAndJsonCarryEveryRow) {
  RunInfo info;
  info.label = "a, \"b\"";
  info.library = "lib";
  info.rows.resize(3);
  const std::string csv = to_csv(info);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  EXPECT_NE(csv.find("\"a, \"\"b\"\"\""), std::string::npos);
  const std::string json = to_json(info);
  EXPECT_NE(json.find("\"label\": \"a, \\\"b\\\"\""), std::string::npos);
  EXPECT_NE(json.find("\"rows\": ["), std::string::npos);
  EXPECT_NE(json.find("\"wire\": \"off\""), std::string::npos);
  info.wire = "bf16";
  EXPECT_NE(to_json(info).find("\"wire\": \"bf16\""), std::string::npos);
}

// ---- 16-bit floats and verification -------------------------------------------------------

TEST(Data, HalfAndBFloat16RoundTrip) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 0.333251953125f, 6.103515625e-05f, 5.960464477539063e-08f})
    EXPECT_EQ(half_to_float(float_to_half(f)), f) << f;
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(70000.0f))));
  EXPECT_EQ(half_to_float(float_to_half(1.0f + 1.0f / 4096)), 1.0f);  // rounds to even
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  for (float f : {0.0f, 1.0f, -3.0f, 256.0f, std::ldexp(1.5f, 100)}) EXPECT_EQ(bfloat16_to_float(float_to_bfloat16(f)), f) << f;
  EXPECT_EQ(bfloat16_to_float(float_to_bfloat16(257.0f)), 256.0f);  // 9 significant bits round to even
}

namespace {

// Inputs of `nranks` ranks for `elems` elements and their reduction computed the way a library
// reducing in the element type would (pairwise, in rank order).
struct Simulated {
  std::vector<std::vector<unsigned char>> inputs;
  std::vector<unsigned char> reduced;
};

Simulated simulate(DataType t, ReduceOp op, int nranks, size_t elems, uint64_t seed) {
  const size_t ts = size_of(t);
  Simulated s;
  s.inputs.assign(static_cast<size_t>(nranks), std::vector<unsigned char>(elems * ts));
  for (int r = 0; r < nranks; ++r) fill_input(s.inputs[r].data(), elems, 0, t, op, nranks, r, seed);
  s.reduced = s.inputs[0];
  for (int r = 1; r < nranks; ++r) {
    for (size_t i = 0; i < elems; ++i) {
      const double a = load_value(s.reduced.data(), i, t), b = load_value(s.inputs[r].data(), i, t);
      double v = a + b;
      if (op == ReduceOp::Prod) v = a * b;
      if (op == ReduceOp::Min) v = std::min(a, b);
      if (op == ReduceOp::Max) v = std::max(a, b);
      store_value(s.reduced.data(), i, t, v);
    }
  }
  if (op == ReduceOp::Avg)
    for (size_t i = 0; i < elems; ++i) {
      double v = load_value(s.reduced.data(), i, t) / nranks;
      if (t != DataType::Float32 && t != DataType::Float64 && t != DataType::Float16 && t != DataType::BFloat16)
        v = std::trunc(v);
      store_value(s.reduced.data(), i, t, v);
    }
  return s;
}

}  // namespace

class EveryTypeAndOp : public ::testing::TestWithParam<std::tuple<DataType, ReduceOp, int>> {};

TEST_P(EveryTypeAndOp, CorrectIsZeroCorruptedIsCounted) {
  const auto [t, op, nranks] = GetParam();
  constexpr size_t kElems = 4096;
  Simulated s = simulate(t, op, nranks, kElems, 7);
  EXPECT_EQ(count_wrong(Collective::AllReduce, s.reduced.data(), kElems, t, op, nranks, 0, 0, 7), 0);
  // Another seed's data is wrong almost everywhere.
  EXPECT_GT(count_wrong(Collective::AllReduce, s.reduced.data(), kElems, t, op, nranks, 0, 0, 8),
            static_cast<int64_t>(kElems / 4));
  // One element changed by several units: exactly one wrong.
  const double v = load_value(s.reduced.data(), 100, t);
  store_value(s.reduced.data(), 100, t, !std::isfinite(v) ? 1.0 : std::fabs(v - 7) > 3 ? 7.0 : -7.0);
  EXPECT_EQ(count_wrong(Collective::AllReduce, s.reduced.data(), kElems, t, op, nranks, 0, 0, 7), 1);
  // A NaN is always wrong (floats).
  if (t == DataType::Float32) {
    store_value(s.reduced.data(), 5, t, NAN);
    EXPECT_EQ(count_wrong(Collective::AllReduce, s.reduced.data(), kElems, t, op, nranks, 0, 0, 7), 2);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, EveryTypeAndOp,
    ::testing::Combine(::testing::ValuesIn(kAllDataTypes), ::testing::ValuesIn(kAllReduceOps), ::testing::Values(2, 3, 8)),
    [](const auto& info) {
      return std::string(to_string(std::get<0>(info.param))) + "_" + std::string(to_string(std::get<1>(info.param))) +
             "_" + std::to_string(std::get<2>(info.param));
    });

TEST(Verification, ManyRanksInHalfStayWithinTolerance) {
  // 64 ranks: half sums leave the exact range, so rounding order matters; a pairwise sum in
  // half must still pass.
  Simulated s = simulate(DataType::Float16, ReduceOp::Sum, 64, 2048, 3);
  EXPECT_EQ(count_wrong(Collective::AllReduce, s.reduced.data(), 2048, DataType::Float16, ReduceOp::Sum, 64, 0, 0, 3),
            0);
}

TEST(Verification, GatherScatterBroadcastReduce) {
  const DataType t = DataType::Int32;
  const int n = 3;
  const size_t count = 100;
  // allgather: every rank's block in rank order.
  std::vector<int32_t> gathered(n * count);
  for (int r = 0; r < n; ++r) fill_input(&gathered[r * count], count, 0, t, ReduceOp::Sum, n, r, 11);
  EXPECT_EQ(count_wrong(Collective::AllGather, gathered.data(), count, t, ReduceOp::Sum, n, 1, 0, 11), 0);
  std::swap(gathered[0], gathered[count]);  // blocks of ranks 0 and 1 mixed up
  EXPECT_GE(count_wrong(Collective::AllGather, gathered.data(), count, t, ReduceOp::Sum, n, 1, 0, 11), 1);

  // reduce_scatter: rank 2 holds block 2 of the full reduction.
  Simulated s = simulate(t, ReduceOp::Sum, n, n * count, 12);
  const void* block2 = s.reduced.data() + 2 * count * sizeof(int32_t);
  EXPECT_EQ(count_wrong(Collective::ReduceScatter, block2, count, t, ReduceOp::Sum, n, 2, 0, 12), 0);
  EXPECT_GT(count_wrong(Collective::ReduceScatter, s.reduced.data(), count, t, ReduceOp::Sum, n, 2, 0, 12), 0);

  // broadcast from root 1; reduce is only checked on the root.
  std::vector<int32_t> b(count);
  fill_input(b.data(), count, 0, t, ReduceOp::Max, n, 1, 13);
  EXPECT_EQ(count_wrong(Collective::Broadcast, b.data(), count, t, ReduceOp::Max, n, 0, 1, 13), 0);
  EXPECT_GT(count_wrong(Collective::Broadcast, b.data(), count, t, ReduceOp::Max, n, 0, 2, 13), 0);
  std::vector<int32_t> garbage(count, 12345);
  EXPECT_EQ(count_wrong(Collective::Reduce, garbage.data(), count, t, ReduceOp::Sum, n, 0, 1, 13), 0);
  EXPECT_EQ(count_wrong(Collective::Reduce, garbage.data(), count, t, ReduceOp::Sum, n, 1, 1, 13),
            static_cast<int64_t>(count));
}

// ---- the driver over an in-memory reference Backend ---------------------------------------

namespace {

// Ranks are threads of one process; collectives are computed directly from every rank's
// buffers, so they are correct by construction and exercise the driver's layouts, in-place
// offsets and verification.
struct World {
  explicit World(int n) : n(n), sync(n), sends(n), recvs(n) {}
  int n;
  std::barrier<> sync;
  std::vector<const void*> sends;
  std::vector<void*> recvs;
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::tuple<int, int, uint32_t>, std::deque<std::vector<unsigned char>>> boxes;
};

class ThreadBackend : public Backend {
 public:
  ThreadBackend(World& w, int rank) : w_(w), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return w_.n; }
  std::string library() const override { return "reference"; }
  std::string transport() const override { return "memory"; }
  std::string algorithm() const override { return "direct"; }

  const void* run(const CollArgs& a) override {
    const size_t ts = size_of(a.type);
    const int n = w_.n;
    w_.sends[rank_] = a.send;
    w_.recvs[rank_] = a.recv;
    w_.sync.arrive_and_wait();
    std::vector<unsigned char> out;
    auto reduce_at = [&](size_t index, size_t slot) {
      double acc = load_value(w_.sends[0], index, a.type);
      for (int r = 1; r < n; ++r) {
        const double v = load_value(w_.sends[r], index, a.type);
        switch (a.op) {
          case ReduceOp::Prod: acc *= v; break;
          case ReduceOp::Min: acc = std::min(acc, v); break;
          case ReduceOp::Max: acc = std::max(acc, v); break;
          default: acc += v; break;
        }
      }
      if (a.op == ReduceOp::Avg) acc /= n;
      store_value(out.data(), slot, a.type, acc);
    };
    switch (a.coll) {
      case Collective::AllReduce:
      case Collective::Reduce:
        out.resize(a.count * ts);
        for (size_t i = 0; i < a.count; ++i) reduce_at(i, i);
        break;
      case Collective::ReduceScatter:
        out.resize(a.count * ts);
        for (size_t i = 0; i < a.count; ++i) reduce_at(rank_ * a.count + i, i);
        break;
      case Collective::Broadcast:
        out.assign(static_cast<const unsigned char*>(w_.sends[a.root]),
                   static_cast<const unsigned char*>(w_.sends[a.root]) + a.count * ts);
        break;
      case Collective::AllGather:
        out.resize(n * a.count * ts);
        for (int r = 0; r < n; ++r) std::memcpy(out.data() + r * a.count * ts, w_.sends[r], a.count * ts);
        break;
      case Collective::P2P: break;
    }
    w_.sync.arrive_and_wait();  // every rank has read every input
    if (a.coll != Collective::Reduce || rank_ == a.root) std::memcpy(a.recv, out.data(), out.size());
    if (corrupt_ && rank_ == 1) static_cast<unsigned char*>(a.recv)[0] ^= 0x40;
    w_.sync.arrive_and_wait();
    return a.recv;
  }

  void send(const void* buf, size_t bytes, int peer, uint32_t tag) override {
    std::lock_guard g(w_.mu);
    auto p = static_cast<const unsigned char*>(buf);
    w_.boxes[{rank_, peer, tag}].emplace_back(p, p + bytes);
    if (corrupt_ && tag == 2 && bytes > 16) w_.boxes[{rank_, peer, tag}].back()[8] ^= 0x40;
    w_.cv.notify_all();
  }
  void recv(void* buf, size_t bytes, int peer, uint32_t tag) override {
    std::unique_lock g(w_.mu);
    auto& box = w_.boxes[{peer, rank_, tag}];
    // A driver that loses track of a message must fail here, not hang the test run.
    ASSERT_TRUE(w_.cv.wait_for(g, std::chrono::seconds(30), [&] { return !box.empty(); }))
        << "rank " << rank_ << " waited 30 s for a message from rank " << peer << " with tag " << tag;
    ASSERT_EQ(box.front().size(), bytes);
    std::memcpy(buf, box.front().data(), bytes);
    box.pop_front();
  }
  void send_window(const void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    for (int i = 0; i < n; ++i) send(buf, bytes, peer, tag);
  }
  void recv_window(void* buf, size_t bytes, int n, int peer, uint32_t tag) override {
    for (int i = 0; i < n; ++i) recv(buf, bytes, peer, tag);
  }

  void exchange_window(const void* send, void* recv, size_t bytes, int n, int peer, uint32_t tag) override {
    send_window(send, bytes, n, peer, tag);
    recv_window(recv, bytes, n, peer, tag);
  }

  bool corrupt_ = false;

 private:
  World& w_;
  int rank_;
};

std::vector<RunInfo> run_world(int n, Config cfg, bool corrupt = false) {
  World w(n);
  std::vector<RunInfo> infos(n);
  std::vector<std::thread> threads;
  cfg.quiet = true;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      ThreadBackend b(w, r);
      b.corrupt_ = corrupt;
      infos[r] = run_benchmark(b, cfg, "test");
    });
  for (auto& t : threads) t.join();
  return infos;
}

Config small(Collective c) {
  Config cfg;
  cfg.coll = c;
  cfg.min_bytes = 4;
  cfg.max_bytes = 64 << 10;
  cfg.factor = 16;
  cfg.iters = 2;
  cfg.warmup = 1;
  return cfg;
}

}  // namespace

class DriverEveryCollective : public ::testing::TestWithParam<std::tuple<Collective, int>> {};

TEST_P(DriverEveryCollective, ChecksOutOfPlaceAndInPlace) {
  const auto [c, n] = GetParam();
  Config cfg = small(c);
  cfg.root = n - 1;
  auto infos = run_world(n, cfg);
  const RunInfo& info = infos[0];
  ASSERT_FALSE(info.rows.empty());
  for (const Row& r : info.rows) {
    if (c == Collective::P2P) {
      EXPECT_EQ(r.p2p_wrong, 0) << r.bytes;
      EXPECT_GT(r.p2p_gbps, 0);
      EXPECT_GT(r.latency_us, 0);
    } else {
      EXPECT_EQ(r.oop.wrong, 0) << r.bytes;
      EXPECT_EQ(r.ip.wrong, 0) << r.bytes;
      EXPECT_GT(r.oop.time_us, 0);
      EXPECT_EQ(r.oop.iters, 2);
    }
  }
  EXPECT_EQ(exit_status(info), 0);
  // Every rank agrees on the figures (reduced over the ranks; this backend sums in rank order,
  // so the last bits may differ).
  for (int r = 1; r < n; ++r) {
    ASSERT_EQ(infos[r].rows.size(), info.rows.size());
    for (size_t i = 0; i < info.rows.size(); ++i) {
      const Row &mine = infos[r].rows[i], &first = info.rows[i];
      EXPECT_EQ(mine.bytes, first.bytes);
      EXPECT_DOUBLE_EQ(mine.oop.time_us, first.oop.time_us) << "rank " << r << ", " << first.bytes << " bytes";
      EXPECT_DOUBLE_EQ(mine.p2p_gbps, first.p2p_gbps) << "rank " << r << ", " << first.bytes << " bytes";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, DriverEveryCollective,
                         ::testing::Combine(::testing::ValuesIn(kAllCollectives), ::testing::Values(2, 3)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(Driver, TypesAndOpsThroughTheWholeLoop) {
  for (DataType t : kAllDataTypes)
    for (ReduceOp op : kAllReduceOps) {
      Config cfg = small(Collective::AllReduce);
      cfg.type = t;
      cfg.op = op;
      cfg.max_bytes = 4096;
      auto infos = run_world(3, cfg);
      EXPECT_EQ(total_wrong(infos[0]), 0) << to_string(t) << " " << to_string(op);
    }
}

TEST(Driver, BidirectionalPointToPoint) {
  Config cfg = small(Collective::P2P);
  cfg.bidir = true;
  auto infos = run_world(3, cfg);
  for (const Row& r : infos[0].rows) {
    EXPECT_EQ(r.p2p_wrong, 0);
    EXPECT_GT(r.p2p_gbps, 0);
  }
}

TEST(Driver, CorruptedResultsFailTheRun) {
  Config cfg = small(Collective::AllReduce);
  auto infos = run_world(2, cfg, true);
  const RunInfo& info = infos[0];
  for (const Row& r : info.rows) {
    EXPECT_EQ(r.oop.wrong, 1) << r.bytes;
    EXPECT_EQ(r.ip.wrong, 1) << r.bytes;
  }
  EXPECT_EQ(exit_status(info), 1);
  EXPECT_NE(table_footer(info).find("FAILED"), std::string::npos);

  auto p2p = run_world(2, small(Collective::P2P), true);
  EXPECT_GT(total_wrong(p2p[0]), 0);
  EXPECT_EQ(exit_status(p2p[0]), 1);
}

TEST(Driver, AdaptiveIterationsAndUncheckedRuns) {
  Config cfg = small(Collective::AllGather);
  cfg.check = false;
  cfg.min_time = 0.002;
  cfg.iters = 1;
  cfg.warmup = 2;
  auto infos = run_world(2, cfg);
  for (const Row& r : infos[0].rows) {
    EXPECT_EQ(r.oop.wrong, -1);
    EXPECT_GE(r.oop.iters, 1);
  }
  EXPECT_NE(table_footer(infos[0]).find("not checked"), std::string::npos);
  // --max-time lowers -n: no call is shorter than a nanosecond, so one iteration remains.
  cfg.iters = 1000;
  cfg.min_time = 0;
  cfg.max_time = 1e-9;
  auto capped = run_world(2, cfg);
  ASSERT_FALSE(capped[0].rows.empty());
  for (const Row& r : capped[0].rows) EXPECT_EQ(r.oop.iters, 1) << r.bytes;
}

TEST(Driver, RefusesWhatTheLibraryCannotDo) {
  struct NoAvg : ThreadBackend {
    using ThreadBackend::ThreadBackend;
    std::string unsupported(Collective, DataType, ReduceOp op) const override {
      return op == ReduceOp::Avg ? "no avg" : "";
    }
  };
  World w(1);
  NoAvg b(w, 0);
  Config cfg = small(Collective::AllReduce);
  cfg.quiet = true;
  cfg.op = ReduceOp::Avg;
  EXPECT_THROW(run_benchmark(b, cfg, "test"), Unsupported);
}
