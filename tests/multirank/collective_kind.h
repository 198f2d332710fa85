// The collectives the multi-rank suites sweep over, and their names in test names and messages.
#pragma once

namespace ringlink::testing {

enum class Coll { AllReduce, ReduceScatter, AllGather, Broadcast, Reduce };

inline const char* name(Coll c) {
  switch (c) {
    case Coll::AllReduce: return "allreduce";
    case Coll::ReduceScatter: return "reduce_scatter";
    case Coll::AllGather: return "allgather";
    case Coll::Broadcast: return "broadcast";
    case Coll::Reduce: return "reduce";
  }
  return "?";
}

}  // namespace ringlink::testing
