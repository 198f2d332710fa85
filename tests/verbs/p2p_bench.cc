// Point-to-point and allreduce benchmark over whatever transport the environment picks:
//   ringlink-run -n N -- build/tests/verbs/p2p-bench [--iters N] [--max-bytes B]
// Point-to-point, between ranks 0 and 1: latency by ping-pong (half the round trip, median over
// iterations); bandwidth by a window of messages one way then a 1-byte acknowledgement (median
// over repetitions). Allreduce, every rank: float sums, median time, bus bandwidth as
// nccl-tests defines it (algbw * 2(n-1)/n). Every received byte and element is checked; "wrong"
// counts those that differ. Prints figures; never fails on time.
#include <ringlink/ringlink.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

uint8_t expected(size_t i, uint64_t round) { return static_cast<uint8_t>((i * 131 + round * 7 + 1) & 0xff); }

}  // namespace

int main(int argc, char** argv) {
  int iters = 200;
  size_t max_bytes = size_t{64} << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--iters")) iters = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--max-bytes")) max_bytes = std::strtoull(argv[i + 1], nullptr, 10);
  }
  // Ranks beyond the first two wait for the end while ranks 0 and 1 measure point-to-point.
  ringlink::Options options = ringlink::Options::from_environment();
  options.timeout = std::max<std::chrono::milliseconds>(options.timeout, std::chrono::minutes(10));
  ringlink::Communicator c(options);
  const int me = c.rank();
  if (c.size() < 2) {
    std::fprintf(stderr, "p2p-bench needs two ranks\n");
    return 2;
  }
  const int peer = me == 0 ? 1 : 0;
  // Allreduce over every rank, first: the engine numbers collectives' tags by every operation
  // submitted so far, so they must come before the point-to-point messages only two ranks send.
  const int n = c.size();
  if (me == 0)
    std::printf("# allreduce (float, sum) over %d ranks\n# %10s %14s %14s %10s\n", n, "bytes", "time_us", "busbw_GB/s",
                "wrong");
  for (size_t bytes = 1024; bytes <= max_bytes; bytes *= 16) {
    const size_t count = bytes / sizeof(float);
    std::vector<float> data(count);
    std::vector<double> times;
    uint64_t bad = 0;
    const int reps = bytes >= (16u << 20) ? 5 : 20;
    for (int rep = -1; rep < reps; ++rep) {
      for (size_t i = 0; i < count; ++i) data[i] = static_cast<float>((me + 1) * static_cast<int>(i % 7 + 1));
      auto t0 = Clock::now();
      c.allreduce(data.data(), count, ringlink::DataType::Float32, ringlink::ReduceOp::Sum);
      if (rep >= 0) times.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      const float ranks_sum = static_cast<float>(n * (n + 1) / 2);
      for (size_t i = 0; i < count; ++i) bad += data[i] != ranks_sum * static_cast<float>(i % 7 + 1);
    }
    uint64_t total_bad = 0;
    c.allreduce(&bad, &total_bad, 1, ringlink::DataType::Int64, ringlink::ReduceOp::Sum);
    if (me == 0) {
      double us = median(times);
      double busbw = static_cast<double>(bytes) / (us * 1e-6) / 1e9 * 2.0 * (n - 1) / n;
      std::printf("  %10zu %14.1f %14.3f %10llu\n", bytes, us, busbw, static_cast<unsigned long long>(total_bad));
      std::fflush(stdout);
    }
  }
  std::vector<size_t> sizes;
  for (size_t s = 8; s <= max_bytes; s *= 8) sizes.push_back(s);
  if (sizes.back() != max_bytes) sizes.push_back(max_bytes);

  uint8_t done = 0;
  if (me > 1) {  // point-to-point is between ranks 0 and 1; the others wait for its end
    c.recv(&done, 1, 0, 7);
    return 0;
  }
  std::vector<uint8_t> buf(max_bytes), ack(1);
  // Both ranks start each timed round together.
  auto sync = [&] {
    uint8_t out = 1, in = 0;
    auto r = c.irecv(&in, 1, peer, 6);
    c.send(&out, 1, peer, 6);
    r.wait();
  };
  uint64_t wrong = 0;
  if (me == 0)
    std::printf("# p2p over %s\n# %10s %14s %14s %10s\n", c.transport_name().c_str(), "bytes", "latency_us",
                "bandwidth_GB/s", "wrong");
  for (size_t bytes : sizes) {
    // Latency: ping-pong.
    const int lat_iters = bytes <= (1u << 20) ? iters : std::max(5, iters / 20);
    std::vector<double> lat;
    for (int it = -5; it < lat_iters; ++it) {
      auto t0 = Clock::now();
      if (me == 0) {
        c.send(buf.data(), bytes, peer, 1);
        c.recv(buf.data(), bytes, peer, 2);
      } else {
        c.recv(buf.data(), bytes, peer, 1);
        c.send(buf.data(), bytes, peer, 2);
      }
      if (it >= 0) lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 2);
    }
    // Bandwidth: a window of messages, one way, with the data checked.
    const int window = bytes >= (16u << 20) ? 2 : 8;
    const int reps = bytes >= (16u << 20) ? 5 : 20;
    std::vector<std::vector<uint8_t>> slots(static_cast<size_t>(window), std::vector<uint8_t>(bytes));
    std::vector<double> bw;
    for (int rep = -1; rep < reps; ++rep) {
      const uint64_t round = static_cast<uint64_t>(rep + 1);
      if (me == 0)
        for (auto& s : slots)
          for (size_t i = 0; i < bytes; ++i) s[i] = expected(i, round);
      sync();
      auto t0 = Clock::now();
      std::vector<ringlink::Work> works;
      for (auto& s : slots) works.push_back(me == 0 ? c.isend(s.data(), bytes, peer, 3) : c.irecv(s.data(), bytes, peer, 3));
      for (auto& w : works) w.wait();
      if (me == 0)
        c.recv(ack.data(), 1, peer, 4);
      else
        c.send(ack.data(), 1, peer, 4);
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      if (rep >= 0) bw.push_back(static_cast<double>(bytes) * window / secs / 1e9);
      if (me == 1)
        for (auto& s : slots)
          for (size_t i = 0; i < bytes; ++i) wrong += s[i] != expected(i, round);
    }
    uint64_t wrong_here = me == 1 ? wrong : 0;
    if (me == 1) c.send(&wrong_here, sizeof wrong_here, 0, 5);
    if (me == 0) {
      c.recv(&wrong_here, sizeof wrong_here, 1, 5);
      std::printf("  %10zu %14.2f %14.3f %10llu\n", bytes, median(lat), median(bw),
                  static_cast<unsigned long long>(wrong_here));
      std::fflush(stdout);
    }
    wrong = 0;
  }
  if (me == 0)
    for (int r = 2; r < n; ++r) c.send(&done, 1, r, 7);
  return 0;
}
