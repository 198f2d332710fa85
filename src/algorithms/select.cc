#include "algorithms/select.h"

#include <algorithm>
#include <cmath>

namespace ringlink::algo {

namespace {
int ceil_log2(int n) {
  int d = 0;
  while ((1 << d) < n) ++d;
  return d;
}
double us(double bytes, double gbps) { return bytes / (gbps * 1e3); }  // GB/s = 1e3 bytes per us
}  // namespace

const char* to_string(AllreduceAlgo a) {
  switch (a) {
    case AllreduceAlgo::Ring: return "ring";
    case AllreduceAlgo::Tree: return "tree";
    case AllreduceAlgo::RecursiveDoubling: return "recursive-doubling";
  }
  return "?";
}

double ring_allreduce_us(size_t bytes, int n, const LinkModel& m, size_t chunk_bytes) {
  // 2(n-1) steps; each rank sends and receives 2(n-1)/n of the data and reduces (n-1)/n of it.
  // The first chunk crosses all 2(n-1) steps before the pipeline is full.
  double steps = 2.0 * (n - 1);
  double chunk = std::min<double>(static_cast<double>(bytes) / n, static_cast<double>(chunk_bytes));
  return steps * m.latency_us + us(steps / n * static_cast<double>(bytes), m.bandwidth_gbps) +
         us((n - 1.0) / n * static_cast<double>(bytes), m.reduce_gbps) + (steps - 1) * us(chunk, m.bandwidth_gbps);
}

double tree_allreduce_us(size_t bytes, int n, const LinkModel& m, size_t chunk_bytes) {
  // Up and down a tree of depth ceil(log2 n). Each tree carries half the data; an interior
  // node sends its half once up and twice down, and is a leaf of the other tree: about twice
  // the data crosses each rank's link, and its reduction covers the whole message.
  double depth = ceil_log2(n);
  double chunk = std::min<double>(static_cast<double>(bytes) / 2, static_cast<double>(chunk_bytes));
  return 2 * depth * m.latency_us + us(2.0 * static_cast<double>(bytes), m.bandwidth_gbps) +
         us(static_cast<double>(bytes), m.reduce_gbps) + (2 * depth - 1) * us(chunk, m.bandwidth_gbps);
}

double recursive_doubling_limit(const LinkProperties& link) {
  // Measured (docs/collectives.md): over shared memory it already lost to ring and tree at
  // 32 KiB (1.3x at 2 ranks, 2x at 4); over networks it lost above 64 KiB in every case.
  return link.shared_memory ? 16 * 1024 : 64 * 1024;
}

double recursive_doubling_us(size_t bytes, int n, const LinkModel& m) {
  int p = 1;
  while (p * 2 <= n) p *= 2;
  double rounds = ceil_log2(p) + (p < n ? 2 : 0);
  return rounds * (m.latency_us + us(static_cast<double>(bytes), m.bandwidth_gbps) +
                   us(static_cast<double>(bytes), m.reduce_gbps));
}

AllreduceChoice choose_allreduce(size_t bytes, int n, Algorithm forced, bool fits_slot, const LinkModel& m,
                                 size_t chunk_bytes) {
  const bool rd_candidate = fits_slot && static_cast<double>(bytes) <= m.rd_max_bytes;
  AllreduceChoice c{AllreduceAlgo::Ring, ring_allreduce_us(bytes, n, m, chunk_bytes),
                    tree_allreduce_us(bytes, n, m, chunk_bytes), rd_candidate ? recursive_doubling_us(bytes, n, m) : -1};
  if (forced == Algorithm::Ring) return c;
  if (forced == Algorithm::Tree) {
    c.algo = AllreduceAlgo::Tree;
    return c;
  }
  double best = c.ring_us;
  if (n > 2 && c.tree_us < best) {
    best = c.tree_us;
    c.algo = AllreduceAlgo::Tree;
  }
  if (c.rd_us >= 0 && c.rd_us < best) c.algo = AllreduceAlgo::RecursiveDoubling;
  return c;
}

TreeShape choose_rooted_shape(size_t bytes, int n, Algorithm forced, const LinkModel& m, size_t chunk_bytes) {
  if (forced == Algorithm::Ring) return TreeShape::Chain;
  if (forced == Algorithm::Tree) return TreeShape::Binary;
  // Chain: n-1 hops to fill, then each link carries the data once. Binary tree: log2(n) hops,
  // but interior nodes send the data twice.
  double chunk = std::min<double>(static_cast<double>(bytes), static_cast<double>(chunk_bytes));
  double chain = (n - 1) * (m.latency_us + us(chunk, m.bandwidth_gbps)) + us(static_cast<double>(bytes), m.bandwidth_gbps);
  double depth = ceil_log2(n);
  double tree = depth * (m.latency_us + us(chunk, m.bandwidth_gbps)) + us(2.0 * static_cast<double>(bytes), m.bandwidth_gbps);
  return chain < tree ? TreeShape::Chain : TreeShape::Binary;
}

}  // namespace ringlink::algo
