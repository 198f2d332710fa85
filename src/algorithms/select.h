// Choosing an algorithm from a small cost model: time = latency per message x messages on the
// critical path + bytes on the critical path / bandwidth + bytes reduced / reduction speed.
// The constants are measured on the machine (see docs/collectives.md) and agreed by all ranks
// at start-up, so every rank makes the same choice.
#pragma once

#include <cstddef>
#include <string>

#include "algorithms/tree_topology.h"
#include "ringlink/options.h"
#include "transport.h"

namespace ringlink::algo {

struct LinkModel {
  double latency_us = 10.0;        // one small message, one way, through the engine
  double bandwidth_gbps = 4.0;     // one direction, large messages
  double reduce_gbps = 10.0;       // combine() throughput on this host (output bytes per second)
  // Recursive doubling moves and reduces the whole vector in every round; above this size it
  // lost to ring or tree in the measurements (docs/collectives.md), so it is no candidate there
  // whatever the estimates say.
  double rd_max_bytes = 64 * 1024;
};

enum class AllreduceAlgo { Ring, Tree, RecursiveDoubling };

const char* to_string(AllreduceAlgo a);

// Largest message recursive doubling may exchange whole over links like `link`.
double recursive_doubling_limit(const LinkProperties& link);

struct AllreduceChoice {
  AllreduceAlgo algo;
  double ring_us, tree_us, rd_us;  // the estimates behind the choice (-1: not applicable)
};

// `fits_slot`: the message fits one staging slot (recursive doubling needs that).
AllreduceChoice choose_allreduce(size_t bytes, int n, Algorithm forced, bool fits_slot, const LinkModel& m,
                                 size_t chunk_bytes);
// The tree broadcast and reduce run over.
TreeShape choose_rooted_shape(size_t bytes, int n, Algorithm forced, const LinkModel& m, size_t chunk_bytes);

// Estimates in microseconds, exposed for tests and the docs.
double ring_allreduce_us(size_t bytes, int n, const LinkModel& m, size_t chunk_bytes);
double tree_allreduce_us(size_t bytes, int n, const LinkModel& m, size_t chunk_bytes);
double recursive_doubling_us(size_t bytes, int n, const LinkModel& m);

}  // namespace ringlink::algo
