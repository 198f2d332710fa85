// Message sizes: their shortest spelling, the sweep, and the per-collective arithmetic
// (element counts, buffer layout, algbw and busbw) exactly as nccl-tests defines them.
// Sizes are parsed by ringlink::parse_byte_size (common/byte_size.h).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "bench/bench.h"

namespace ringlink::bench {

// 8 -> "8", 65536 -> "64K", 3 << 20 -> "3M": the shortest exact spelling.
std::string format_size(size_t bytes);

// min..max multiplying by `factor` (> 1), or adding `step` when factor <= 1.
// The last size never exceeds max; an empty list when min > max.
std::vector<size_t> sweep_sizes(size_t min_bytes, size_t max_bytes, double factor, size_t step);

// Element counts for one size, as nccl-tests' getCollByteCount: `count` is size / typesize.
struct Layout {
  size_t send_count = 0;           // elements in the send buffer
  size_t recv_count = 0;           // elements in the receive buffer
  size_t param_count = 0;          // the count passed to the collective and printed
  size_t send_inplace_offset = 0;  // elements, multiplied by the rank, for the in-place run
  size_t recv_inplace_offset = 0;
};
Layout layout_for(Collective c, size_t count, int nranks);

// The "size" column: the larger of the send and receive buffers in bytes.
inline size_t reported_bytes(const Layout& l, size_t type_size) {
  return (l.send_count > l.recv_count ? l.send_count : l.recv_count) * type_size;
}

// busbw / algbw: allreduce 2(n-1)/n, reduce_scatter and allgather (n-1)/n, the rest 1.
double busbw_factor(Collective c, int nranks);

struct Bandwidth {
  double algbw = 0;  // GB/s (1e9 bytes per second)
  double busbw = 0;
};
// `param_count` as in Layout; allgather and reduce_scatter move param_count * nranks elements.
Bandwidth bandwidth(Collective c, size_t param_count, size_t type_size, double seconds, int nranks);

}  // namespace ringlink::bench
