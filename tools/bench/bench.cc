// The collectives' names, as the tools print and accept them.
#include "bench/bench.h"

#include <cctype>
#include <string>

namespace ringlink::bench {

std::string_view to_string(Collective c) {
  switch (c) {
    case Collective::AllReduce: return "allreduce";
    case Collective::Broadcast: return "broadcast";
    case Collective::Reduce: return "reduce";
    case Collective::AllGather: return "allgather";
    case Collective::ReduceScatter: return "reduce_scatter";
    case Collective::P2P: return "p2p";
  }
  return "?";
}

std::optional<Collective> parse_collective(std::string_view s) {
  std::string n;
  for (char ch : s)
    if (ch != '_' && ch != '-') n += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (n == "allreduce") return Collective::AllReduce;
  if (n == "broadcast" || n == "bcast") return Collective::Broadcast;
  if (n == "reduce") return Collective::Reduce;
  if (n == "allgather") return Collective::AllGather;
  if (n == "reducescatter") return Collective::ReduceScatter;
  if (n == "p2p" || n == "sendrecv" || n == "pt2pt") return Collective::P2P;
  return std::nullopt;
}

bool has_root(Collective c) { return c == Collective::Broadcast || c == Collective::Reduce; }
bool has_reduction(Collective c) {
  return c == Collective::AllReduce || c == Collective::Reduce || c == Collective::ReduceScatter;
}

}  // namespace ringlink::bench
