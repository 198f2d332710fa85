#include "bench/sweep.h"

#include <cmath>

namespace ringlink::bench {

std::string format_size(size_t bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (u < 4 && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return std::to_string(bytes) + kUnits[u];
}

std::vector<size_t> sweep_sizes(size_t min_bytes, size_t max_bytes, double factor, size_t step) {
  std::vector<size_t> out;
  if (min_bytes > max_bytes) return out;
  if (factor <= 1 && step == 0) {
    out.push_back(min_bytes);
    if (max_bytes != min_bytes) out.push_back(max_bytes);
    return out;
  }
  for (size_t s = min_bytes; s <= max_bytes;) {
    out.push_back(s);
    size_t next;
    if (factor > 1) {
      double d = std::floor(static_cast<double>(s) * factor);
      if (s == 0) d = 1;  // a sweep from 0 continues at 1 byte
      if (d > static_cast<double>(max_bytes)) break;
      next = static_cast<size_t>(d);
    } else {
      if (s > max_bytes - step) break;
      next = s + step;
    }
    if (next <= s) break;
    s = next;
  }
  return out;
}

Layout layout_for(Collective c, size_t count, int nranks) {
  const size_t n = nranks > 0 ? static_cast<size_t>(nranks) : 1;
  Layout l;
  switch (c) {
    case Collective::AllGather:
      l.send_count = count / n;
      l.recv_count = (count / n) * n;
      l.param_count = l.send_count;
      l.send_inplace_offset = count / n;
      l.recv_inplace_offset = 0;
      break;
    case Collective::ReduceScatter:
      l.send_count = (count / n) * n;
      l.recv_count = count / n;
      l.param_count = l.recv_count;
      l.send_inplace_offset = 0;
      l.recv_inplace_offset = count / n;
      break;
    default:
      l.send_count = l.recv_count = l.param_count = count;
      break;
  }
  return l;
}

double busbw_factor(Collective c, int nranks) {
  const double n = nranks;
  switch (c) {
    case Collective::AllReduce: return nranks > 0 ? 2.0 * (n - 1) / n : 0;
    case Collective::AllGather:
    case Collective::ReduceScatter: return nranks > 0 ? (n - 1) / n : 0;
    case Collective::Broadcast:
    case Collective::Reduce:
    case Collective::P2P: return 1.0;
  }
  return 1.0;
}

Bandwidth bandwidth(Collective c, size_t param_count, size_t type_size, double seconds, int nranks) {
  Bandwidth b;
  if (seconds <= 0) return b;
  double bytes = static_cast<double>(param_count) * static_cast<double>(type_size);
  if (c == Collective::AllGather || c == Collective::ReduceScatter) bytes *= nranks;
  b.algbw = bytes / 1.0e9 / seconds;
  b.busbw = b.algbw * busbw_factor(c, nranks);
  return b;
}

}  // namespace ringlink::bench
