// The driver: the Backend's bookkeeping defaults, the per-size measurement (collectives and
// p2p), and run_benchmark, which prints the table and writes the files.
#include "bench/runner.h"

#include "common/cuda_driver.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "bench/buffer.h"
#include "bench/data.h"
#include "bench/plot.h"
#include "bench/sweep.h"

namespace ringlink::bench {

// ---- Backend defaults -----------------------------------------------------------------------

namespace {
constexpr uint32_t kTagGather = 1, kTagData = 2, kTagAck = 3, kTagPing = 4, kTagPong = 5, kTagScalar = 6;

double combine(double a, double b, ReduceOp op) {
  switch (op) {
    case ReduceOp::Min: return std::min(a, b);
    case ReduceOp::Max: return std::max(a, b);
    case ReduceOp::Prod: return a * b;
    default: return a + b;
  }
}

// Sends to `to` and receives from `from` without deadlocking a ring even where sends are
// synchronous: even ranks send first, odd ranks receive first.
void exchange(Backend& b, const void* out, size_t out_bytes, int to, void* in, size_t in_bytes, int from,
              uint32_t tag) {
  if (b.rank() % 2 == 0) {
    b.send(out, out_bytes, to, tag);
    b.recv(in, in_bytes, from, tag);
  } else {
    b.recv(in, in_bytes, from, tag);
    b.send(out, out_bytes, to, tag);
  }
}

}  // namespace

// A ring pass: every rank issues the same calls, which keeps the bookkeeping symmetric (a
// library may number its collectives by the calls each rank made before them).
double Backend::allreduce_scalar(double v, ReduceOp op) {
  const int n = size();
  if (n == 1) return v;
  const int next = (rank() + 1) % n, prev = (rank() + n - 1) % n;
  double acc = v, passing = v;
  for (int step = 0; step < n - 1; ++step) {
    double got = 0;
    exchange(*this, &passing, sizeof passing, next, &got, sizeof got, prev, kTagScalar);
    acc = combine(acc, got, op);
    passing = got;
  }
  return op == ReduceOp::Avg ? acc / n : acc;
}

void Backend::barrier() { allreduce_scalar(0, ReduceOp::Sum); }

// ---- the driver -------------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// Rank 0 gets every rank's line, in rank order (passed around the ring, like the scalars).
std::vector<std::string> gather_lines(Backend& b, const std::string& mine) {
  const int n = b.size(), me = b.rank();
  std::vector<std::string> all(static_cast<size_t>(n));
  all[static_cast<size_t>(me)] = mine;
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  std::string passing = mine;
  for (int step = 1; step < n; ++step) {
    uint32_t out_len = static_cast<uint32_t>(passing.size()), in_len = 0;
    exchange(b, &out_len, sizeof out_len, next, &in_len, sizeof in_len, prev, kTagGather);
    std::string got(in_len, '\0');
    exchange(b, passing.data(), passing.size(), next, got.data(), got.size(), prev, kTagGather);
    all[static_cast<size_t>((me - step + n) % n)] = got;
    passing = std::move(got);
  }
  return all;
}

double aggregate_time(Backend& b, double seconds, int average) {
  switch (average) {
    case 0: return b.allreduce_scalar(b.rank() == 0 ? seconds : 0.0, ReduceOp::Sum);
    case 2: return b.allreduce_scalar(seconds, ReduceOp::Min);
    case 3: return b.allreduce_scalar(seconds, ReduceOp::Max);
    default: return b.allreduce_scalar(seconds, ReduceOp::Avg);
  }
}

// Iterations for one measurement, from the warm-up's per-iteration estimate (agreed by all).
int choose_iters(Backend& b, const Config& cfg, int base, double estimate) {
  if (cfg.min_time <= 0 && cfg.max_time <= 0) return base;
  const double t = b.allreduce_scalar(estimate, ReduceOp::Max);
  if (t <= 0) return base;
  double iters = base;
  if (cfg.max_time > 0 && iters * t > cfg.max_time) iters = std::floor(cfg.max_time / t);
  if (cfg.min_time > 0 && iters * t < cfg.min_time) iters = std::ceil(cfg.min_time / t);
  return static_cast<int>(std::clamp(iters, 1.0, 10000000.0));
}

class Runner {
 public:
  Runner(Backend& b, const Config& cfg, RunInfo& info) : b_(b), cfg_(cfg), info_(info) {
    rank_ = b.rank();
    n_ = b.size();
    ts_ = size_of(cfg.type);
    const size_t bytes = std::max<size_t>(cfg.max_bytes, ts_);
    send_ = Buffer(bytes);
    recv_ = Buffer(bytes);
    // Real data from the start, so even -c 0 runs reduce ordinary numbers.
    fill_input(send_.data(), bytes / ts_, 0, cfg.type, cfg.op, n_, rank_, 0);
    if (cfg.device_cuda) {
      // The collectives run on device copies; the host buffers are where inputs are written and
      // results checked.
      bytes_ = bytes;
      dsend_ = static_cast<unsigned char*>(cuda::device_alloc(bytes));
      drecv_ = static_cast<unsigned char*>(cuda::device_alloc(bytes));
      cuda::copy_to_device(dsend_, send_.data(), bytes);
      cuda::copy_to_device(drecv_, recv_.data(), bytes);
    }
  }
  ~Runner() {
    cuda::device_free(dsend_);
    cuda::device_free(drecv_);
  }
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  void print(const std::string& s) {
    if (rank_ == 0 && !cfg_.quiet) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    }
  }

  void collective_size(size_t size) {
    const size_t count = size / ts_;
    const Layout l = layout_for(cfg_.coll, count, n_);
    if (l.param_count == 0) return;  // nothing to move for this many ranks
    Row row;
    row.bytes = reported_bytes(l, ts_);
    row.count = l.param_count;
    for (bool in_place : {false, true}) {
      CollArgs a;
      a.coll = cfg_.coll;
      a.count = l.param_count;
      a.type = cfg_.type;
      a.op = cfg_.op;
      a.root = cfg_.root;
      a.in_place = in_place;
      unsigned char* send = dsend_ ? dsend_ : send_.bytes();
      unsigned char* recv = drecv_ ? drecv_ : recv_.bytes();
      if (in_place) {
        a.send = recv + l.send_inplace_offset * static_cast<size_t>(rank_) * ts_;
        a.recv = recv + l.recv_inplace_offset * static_cast<size_t>(rank_) * ts_;
      } else {
        a.send = send;
        a.recv = recv;
      }
      (in_place ? row.ip : row.oop) = measure(a, l);
    }
    print(table_row(info_, row) + "\n");
    info_.rows.push_back(row);
  }

  void p2p_size(size_t size) {
    const size_t count = size / ts_;
    if (count == 0) return;
    const size_t bytes = count * ts_;
    Row row;
    row.bytes = bytes;
    row.count = count;
    row.window = static_cast<int>(std::clamp<size_t>(cfg_.window_bytes / bytes, 1, static_cast<size_t>(cfg_.window)));
    const int peer = rank_ == 0 ? 1 : 0;
    const bool active = rank_ < 2;
    const uint64_t seed = next_seed();
    int64_t wrong = 0;
    if (cfg_.check && active) {
      fill_input(send_.data(), count, 0, cfg_.type, ReduceOp::Sum, 2, rank_, seed);
      poison(recv_.data(), bytes);
    }

    // Streaming bandwidth, 0 -> 1: bursts of `window` messages, each burst acknowledged (or,
    // bidirectional, both ways at once: each side's receives complete the burst).
    uint32_t ack = 0;
    auto burst = [&] {
      if (cfg_.bidir) {
        if (active) b_.exchange_window(send_.data(), recv_.data(), bytes, row.window, peer, kTagData);
      } else if (rank_ == 0) {
        b_.send_window(send_.data(), bytes, row.window, 1, kTagData);
        b_.recv(&ack, sizeof ack, 1, kTagAck);
      } else if (rank_ == 1) {
        b_.recv_window(recv_.data(), bytes, row.window, 0, kTagData);
        b_.send(&ack, sizeof ack, 0, kTagAck);
      }
    };
    b_.barrier();
    const double est = timed_warmup(burst);
    row.bw_iters = choose_iters(b_, cfg_, cfg_.iters, est);
    b_.barrier();
    auto t0 = Clock::now();
    for (int i = 0; i < row.bw_iters; ++i) burst();
    const double bw_s = seconds_since(t0);
    const double directions = cfg_.bidir ? 2 : 1;
    const double gbps =
        rank_ == 0 ? directions * static_cast<double>(bytes) * row.window * row.bw_iters / bw_s / 1e9 : 0.0;
    if (cfg_.check && (rank_ == 1 || (cfg_.bidir && rank_ == 0)))
      wrong += count_wrong_message(recv_.data(), count, cfg_.type, peer, seed);

    // Latency: ping-pong, half the round trip.
    if (cfg_.check && active) poison(recv_.data(), bytes);
    auto round_trip = [&] {
      if (rank_ == 0) {
        b_.send(send_.data(), bytes, peer, kTagPing);
        b_.recv(recv_.data(), bytes, peer, kTagPong);
      } else if (rank_ == 1) {
        b_.recv(recv_.data(), bytes, peer, kTagPing);
        b_.send(send_.data(), bytes, peer, kTagPong);
      }
    };
    b_.barrier();
    const int lat_base =
        cfg_.lat_iters > 0 ? cfg_.lat_iters : (bytes <= (64u << 10) ? std::max(cfg_.iters, 1000) : cfg_.iters);
    const double lest = timed_warmup(round_trip);
    row.lat_iters = choose_iters(b_, cfg_, lat_base, lest);
    b_.barrier();
    t0 = Clock::now();
    for (int i = 0; i < row.lat_iters; ++i) round_trip();
    const double lat_s = seconds_since(t0);
    const double lat_us = rank_ == 0 ? lat_s / row.lat_iters / 2 * 1e6 : 0.0;
    if (cfg_.check && active) wrong += count_wrong_message(recv_.data(), count, cfg_.type, peer, seed);

    row.p2p_gbps = b_.allreduce_scalar(gbps, ReduceOp::Sum);
    row.latency_us = b_.allreduce_scalar(lat_us, ReduceOp::Sum);
    row.p2p_wrong = cfg_.check ? static_cast<int64_t>(b_.allreduce_scalar(static_cast<double>(wrong), ReduceOp::Sum)) : -1;
    print(table_row(info_, row) + "\n");
    info_.rows.push_back(row);
  }

 private:
  uint64_t next_seed() { return ++seed_; }

  // Runs the warm-up; returns seconds per iteration, leaving out the first when there are more.
  template <typename F>
  double timed_warmup(F&& f) {
    double first = 0, rest = 0;
    for (int i = 0; i < cfg_.warmup; ++i) {
      auto t = Clock::now();
      f();
      const double dt = seconds_since(t);
      (i == 0 ? first : rest) += dt;
    }
    if (cfg_.warmup > 1) return rest / (cfg_.warmup - 1);
    return first;
  }

  // Device buffers: the host buffer at the same offset.
  void* host_of(const void* p) const {
    auto* b = static_cast<const unsigned char*>(p);
    if (dsend_ && b >= dsend_ && b < dsend_ + bytes_) return send_.bytes() + (b - dsend_);
    if (drecv_ && b >= drecv_ && b < drecv_ + bytes_) return recv_.bytes() + (b - drecv_);
    return const_cast<void*>(p);
  }

  // Poisons the result area, then writes this rank's inputs where the call reads them.
  void prepare(const CollArgs& a, const Layout& l, uint64_t seed) {
    void* send = host_of(a.send);
    poison(host_of(a.recv), l.recv_count * ts_);
    switch (a.coll) {
      case Collective::Broadcast:
        if (rank_ == a.root) fill_input(send, l.param_count, 0, a.type, a.op, n_, rank_, seed);
        break;
      case Collective::ReduceScatter:
        fill_input(send, l.send_count, 0, a.type, a.op, n_, rank_, seed);
        break;
      default: fill_input(send, l.param_count, 0, a.type, a.op, n_, rank_, seed); break;
    }
    if (dsend_) {
      cuda::copy_to_device(dsend_, send_.data(), bytes_);
      cuda::copy_to_device(drecv_, recv_.data(), bytes_);
    }
  }

  ModeResult measure(const CollArgs& a, const Layout& l) {
    ModeResult m;
    if (cfg_.check) prepare(a, l, next_seed());
    b_.barrier();
    const double est = timed_warmup([&] { b_.run(a); });
    m.iters = choose_iters(b_, cfg_, cfg_.iters, est);
    b_.barrier();
    const auto t0 = Clock::now();
    for (int i = 0; i < m.iters; ++i) b_.run(a);
    const double per_iter = seconds_since(t0) / m.iters;
    const double t = aggregate_time(b_, per_iter, cfg_.average);
    m.time_us = t * 1e6;
    m.bw = bandwidth(a.coll, a.count, ts_, t, n_);
    if (cfg_.check) {
      const uint64_t seed = next_seed();
      prepare(a, l, seed);
      b_.barrier();
      const void* result = b_.run(a);
      if (drecv_) {
        cuda::copy_to_host(recv_.data(), drecv_, bytes_);
        result = host_of(result);
      }
      const int64_t w = count_wrong(a.coll, result, a.count, a.type, a.op, n_, rank_, a.root, seed);
      m.wrong = static_cast<int64_t>(b_.allreduce_scalar(static_cast<double>(w), ReduceOp::Sum));
    }
    return m;
  }

  Backend& b_;
  const Config& cfg_;
  RunInfo& info_;
  int rank_ = 0, n_ = 1;
  size_t ts_ = 4;
  Buffer send_, recv_;
  unsigned char* dsend_ = nullptr;  // --device cuda
  unsigned char* drecv_ = nullptr;
  size_t bytes_ = 0;
  uint64_t seed_ = 0;
};

}  // namespace

RunInfo run_benchmark(Backend& b, const Config& cfg, const std::string& tool) {
  RunInfo info;
  info.tool = tool;
  info.library = b.library();
  info.transport = b.transport();
  info.algorithm = b.algorithm();
  info.wire = b.wire_format();
  info.label = cfg.label.empty() ? fmt::format("{} {}", info.library, info.transport) : cfg.label;
  info.host = hostname();
  info.ranks = b.size();
  info.coll = cfg.coll;
  info.type = cfg.type;
  info.op = cfg.op;
  info.root = cfg.root;
  info.check = cfg.check;
  info.iters = cfg.iters;
  info.warmup = cfg.warmup;
  info.min_bytes = cfg.min_bytes;
  info.max_bytes = cfg.max_bytes;

  if (std::string why = b.unsupported(cfg.coll, cfg.type, cfg.op); !why.empty()) {
    if (b.rank() == 0) std::fprintf(stderr, "%s: not supported: %s\n", tool.c_str(), why.c_str());
    throw Unsupported(why);
  }
  if (has_root(cfg.coll) && cfg.root >= b.size())
    throw std::invalid_argument(fmt::format("root {} is out of range for {} ranks", cfg.root, b.size()));
  if (cfg.coll == Collective::P2P && b.size() < 2) throw std::invalid_argument("p2p needs at least two ranks");

  const std::vector<std::string> lines =
      gather_lines(b, fmt::format("#  Rank {:2} Pid {:6} on {:>10}", b.rank(), ::getpid(), info.host));

  Runner runner(b, cfg, info);
  std::string head = fmt::format("# {} {}: {} | transport {} | algorithm {} | wire {} | {} ranks | host {}\n", tool,
                                 to_string(cfg.coll), info.library, info.transport, info.algorithm, info.wire,
                                 info.ranks, info.host);
  if (info.wire != "off")
    head += fmt::format("# wire format {}: float32 reductions carry {} values; sizes, algbw and busbw count the "
                        "float32 bytes\n",
                        info.wire, info.wire);
  if (cfg.sizes.empty()) {
    head += fmt::format("# minBytes {} maxBytes {} step: {}({}) warmup iters: {} iters: {} validation: {}\n",
                        cfg.min_bytes, cfg.max_bytes,
                        cfg.factor > 1 ? fmt::format("{:g}", cfg.factor) : fmt::format("{}", cfg.step),
                        cfg.factor > 1 ? "factor" : "bytes", cfg.warmup, cfg.iters, cfg.check ? 1 : 0);
  } else {
    std::string list;
    for (size_t s : cfg.sizes) {
      if (!list.empty()) list += ',';
      list += format_size(s);
    }
    head += fmt::format("# sizes {} warmup iters: {} iters: {} validation: {}\n", list, cfg.warmup, cfg.iters,
                        cfg.check ? 1 : 0);
  }
  if (cfg.coll == Collective::P2P && cfg.bidir)
    head += "# bidirectional: ranks 0 and 1 stream to each other; bandwidth is the sum of both directions\n";
  if (cfg.min_time > 0 || cfg.max_time > 0)
    head += fmt::format("# iterations adapted to take {:g} s to {:g} s per size\n", cfg.min_time, cfg.max_time);
  head += "#\n# Using ranks\n";
  for (const auto& l : lines) head += l + "\n";
  head += "#\n";
  head += table_header(info);
  runner.print(head);

  const std::vector<size_t> sizes =
      cfg.sizes.empty() ? sweep_sizes(cfg.min_bytes, cfg.max_bytes, cfg.factor, cfg.step) : cfg.sizes;
  for (size_t size : sizes) {
    if (cfg.coll == Collective::P2P) runner.p2p_size(size);
    else runner.collective_size(size);
  }
  runner.print(table_footer(info));

  if (b.rank() == 0) {
    if (!cfg.csv.empty()) write_file(cfg.csv, to_csv(info));
    if (!cfg.json.empty()) write_file(cfg.json, to_json(info));
    if (!cfg.plot.empty()) draw_plot(cfg.plot, cfg.json, info);
  }
  return info;
}

int exit_status(const RunInfo& info) { return total_wrong(info) > 0 ? 1 : 0; }

}  // namespace ringlink::bench
