// The shared core of ringlink-bench and the peer harnesses: one driver measures any library
// through the Backend interface, so every system prints the same nccl-tests style table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <ringlink/types.h>

namespace ringlink::bench {

enum class Collective { AllReduce, Broadcast, Reduce, AllGather, ReduceScatter, P2P };
inline constexpr Collective kAllCollectives[] = {Collective::AllReduce, Collective::Broadcast,
                                                 Collective::Reduce,    Collective::AllGather,
                                                 Collective::ReduceScatter, Collective::P2P};

std::string_view to_string(Collective c);
// Accepts the names above plus nccl-tests' spellings (all_reduce, reduce_scatter, sendrecv, ...).
std::optional<Collective> parse_collective(std::string_view name);

bool has_root(Collective c);       // broadcast, reduce
bool has_reduction(Collective c);  // allreduce, reduce, reduce_scatter

// One collective call. Counts follow the nccl conventions: allgather's count is per rank,
// reduce_scatter's is the per-rank result. In place when the pointers overlap as documented
// in ringlink/communicator.h.
struct CollArgs {
  Collective coll = Collective::AllReduce;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  DataType type = DataType::Float32;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  bool in_place = false;
};

// A library under test. All calls are blocking and collective over the group unless noted.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string library() const = 0;    // e.g. "ringlink 0.1.0", "Open MPI 4.1.4"
  virtual std::string transport() const = 0;  // e.g. "ucx(tcp)", "btl tcp,self"
  virtual std::string algorithm() const = 0;  // e.g. "ring", "library default"
  // The format reductions of float32 carry on the wire: "off" (the values themselves), or a
  // compressed one such as "bf16" (sizes and bandwidths still count the float32 bytes).
  virtual std::string wire_format() const { return "off"; }

  // Empty when the library can run this combination; otherwise why not (printed as is).
  virtual std::string unsupported(Collective, DataType, ReduceOp) const { return {}; }

  // Runs one collective to completion and returns where this rank's result lies (normally
  // a.recv; a library whose in-place convention differs returns its own location).
  virtual const void* run(const CollArgs& a) = 0;

  // Point to point between two ranks; the tag keeps the driver's message streams apart.
  virtual void send(const void* buf, size_t bytes, int peer, uint32_t tag) = 0;
  virtual void recv(void* buf, size_t bytes, int peer, uint32_t tag) = 0;
  // `n` messages of `bytes` each, all posted before any is waited for (a streaming window).
  // The receiver lands every message in the same buffer.
  virtual void send_window(const void* buf, size_t bytes, int n, int peer, uint32_t tag) = 0;
  virtual void recv_window(void* buf, size_t bytes, int n, int peer, uint32_t tag) = 0;
  // Both at once with one peer: `n` receives into `recv` and `n` sends from `send`, all posted
  // before any is waited for (bidirectional streaming).
  virtual void exchange_window(const void* send, void* recv, size_t bytes, int n, int peer, uint32_t tag) = 0;

  // Aggregation for the driver's bookkeeping (timings, wrong counts). The defaults pass the
  // value around a ring of send/recv (runner.cc); a library may override them.
  virtual double allreduce_scalar(double v, ReduceOp op);
  virtual void barrier();
};

}  // namespace ringlink::bench
