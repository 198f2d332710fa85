// The collective calls of Communicator: check arguments, pick an algorithm, submit the schedule.
#include <cstring>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "algorithms/barrier.h"
#include "algorithms/recursive_doubling.h"
#include "algorithms/ring.h"
#include "algorithms/select.h"
#include "algorithms/signature.h"
#include "algorithms/tree.h"
#include "algorithms/tree_topology.h"
#include "comm/cuda_staging.h"
#include "comm/engine.h"
#include "common/cuda_driver.h"
#include "common/log.h"
#include "ringlink/communicator.h"

namespace ringlink {

using detail::Engine;
using detail::Operation;
using detail::Progress;

namespace {

// One rank: the result is the input, put where the caller wants it.
class LocalCopy final : public Operation {
 public:
  LocalCopy(const char* name, const void* src, void* dst, size_t bytes)
      : name_(name), src_(src), dst_(dst), bytes_(bytes) {}
  const char* name() const override { return name_; }
  void start(const detail::OpContext&) override {
    if (dst_ && src_ && dst_ != src_ && bytes_) std::memmove(dst_, src_, bytes_);
  }
  Progress advance(const detail::OpContext&) override { return Progress::Done; }

 private:
  const char* name_;
  const void* src_;
  void* dst_;
  size_t bytes_;
};

// ---- Argument checks, on the calling thread: argument errors never reach the engine.

void check_buffers(const Engine& e, const char* op, const void* send, const void* recv, size_t count, DataType type,
                   bool send_needed = true, bool recv_needed = true) {
  if (count == 0) return;
  if (count > SIZE_MAX / size_of(type))
    throw InvalidArgumentError(e.rank(), -1, op, fmt::format("count {} overflows the address space", count));
  if (send_needed && !send) throw InvalidArgumentError(e.rank(), -1, op, "the send buffer is null");
  if (recv_needed && !recv) throw InvalidArgumentError(e.rank(), -1, op, "the receive buffer is null");
}

void check_root(const Engine& e, const char* op, int root) {
  if (root < 0 || root >= e.size())
    throw InvalidArgumentError(e.rank(), root, op, fmt::format("root {} is out of range for {} ranks", root, e.size()));
}

// ---- Plans: the schedule that runs a collective over host buffers.

// Logs each distinct (collective, size, choice) once at INFO, so a training run's log stays
// short. `describe` runs only when INFO is on: the latency path formats nothing.
template <typename Describe>
void log_choice(const Engine& e, const char* op, size_t bytes, Describe describe) {
  if (!log::enabled(LogLevel::Info)) return;
  static std::mutex mu;
  static std::set<std::string> seen;
  std::string what = describe();
  std::string key = fmt::format("{} {} {} {}", static_cast<const void*>(&e), op, bytes, what);
  std::lock_guard lk(mu);
  if (seen.insert(key).second) log::info("{} of {} bytes over {} ranks: {}", op, bytes, e.size(), what);
}

algo::Args args_of(const std::byte* send, std::byte* recv, size_t count, DataType type, ReduceOp op = ReduceOp::Sum,
                   int root = 0) {
  return algo::Args{send, recv, count, type, op, root};
}

std::unique_ptr<Operation> plan_allreduce(const Engine& e, const algo::Args& a) {
  const size_t bytes = a.count * a.elem();
  if (e.size() == 1) return std::make_unique<LocalCopy>("allreduce", a.send, a.recv, bytes);
  auto c = algo::choose_allreduce(bytes, e.size(), e.algorithm(), bytes <= e.slot_bytes(), e.cost_model(),
                                  e.chunk_bytes());
  log_choice(e, "allreduce", bytes, [&] {
    return fmt::format("{} (model: ring {:.1f} us, tree {:.1f} us, recursive doubling {})", algo::to_string(c.algo),
                       c.ring_us, c.tree_us, c.rd_us < 0 ? std::string("n/a") : fmt::format("{:.1f} us", c.rd_us));
  });
  switch (c.algo) {
    case algo::AllreduceAlgo::RecursiveDoubling:
      return algo::make_recursive_doubling_allreduce(a, e.rank(), e.size());
    case algo::AllreduceAlgo::Tree:
      return algo::make_tree_allreduce(a, e.rank(), e.size(), e.chunk_bytes(), e.pipeline_depth());
    case algo::AllreduceAlgo::Ring:
      break;
  }
  return algo::make_ring(algo::RingMode::AllReduce, a, e.rank(), e.size(), e.chunk_bytes(), e.pipeline_depth());
}

// reduce_scatter and allgather: `a.count` is one rank's block.
std::unique_ptr<Operation> plan_ring(const Engine& e, algo::RingMode mode, const char* name, const algo::Args& a) {
  const size_t block = a.count * a.elem();
  if (e.size() == 1) return std::make_unique<LocalCopy>(name, a.send, a.recv, block);
  log_choice(e, name, block * static_cast<size_t>(e.size()), [] { return std::string("ring"); });
  return algo::make_ring(mode, a, e.rank(), e.size(), e.chunk_bytes(), e.pipeline_depth());
}

std::unique_ptr<Operation> plan_rooted(const Engine& e, const algo::Args& a, bool reduce) {
  const size_t bytes = a.count * a.elem();
  const char* name = reduce ? "reduce" : "broadcast";
  if (e.size() == 1) return std::make_unique<LocalCopy>(name, a.send, a.recv, bytes);
  algo::TreeShape shape = algo::choose_rooted_shape(bytes, e.size(), e.algorithm(), e.cost_model(), e.chunk_bytes());
  log_choice(e, name, bytes, [&] { return std::string(algo::to_string(shape)); });
  if (reduce) return algo::make_tree_reduce(a, e.rank(), e.size(), shape, e.chunk_bytes(), e.pipeline_depth());
  return algo::make_tree_broadcast(a, e.rank(), e.size(), shape, e.chunk_bytes(), e.pipeline_depth());
}

std::unique_ptr<Operation> plan_barrier(const Engine& e) {
  if (e.size() == 1) return std::make_unique<LocalCopy>("barrier", nullptr, nullptr, 0);
  return algo::with_signature(algo::make_barrier(e.rank(), e.size()),
                              algo::Signature{.kind = algo::CollectiveKind::Barrier}, e.rank(), e.size());
}

// Device buffers are staged through host memory around the host plan, which is then made when
// the operation starts.
std::unique_ptr<Operation> with_staging(Engine& e, const char* name, const void* send, size_t send_bytes, void* recv,
                                        size_t recv_bytes, detail::HostPlan plan) {
  if (cuda::available() && (cuda::is_device_pointer(send) || cuda::is_device_pointer(recv)))
    return detail::stage_through_host(e.rank(), e.host_scratch(), name, send, send_bytes, recv, recv_bytes,
                                      std::move(plan));
  return plan(static_cast<const std::byte*>(send), static_cast<std::byte*>(recv));
}

// Every collective on more than one rank carries its signature (algorithms/signature.h).
std::unique_ptr<Operation> signed_op(const Engine& e, std::unique_ptr<Operation> schedule, algo::CollectiveKind kind,
                                     size_t count, DataType type, ReduceOp op = ReduceOp::Sum, int root = 0) {
  if (e.size() == 1) return schedule;
  algo::Signature sig;
  sig.kind = kind;
  sig.count = count;
  sig.type = type;
  sig.op = op;
  sig.root = root;
  return algo::with_signature(std::move(schedule), sig, e.rank(), e.size());
}

// ---- Each collective: check its arguments, then plan it.

std::unique_ptr<Operation> allreduce_op(Engine& e, const void* send, void* recv, size_t count, DataType type,
                                        ReduceOp op) {
  check_buffers(e, "allreduce", send, recv, count, type);
  const size_t bytes = count * size_of(type);
  return signed_op(e,
                   with_staging(e, "allreduce", send, bytes, recv, bytes,
                                [&e, count, type, op](const std::byte* s, std::byte* r) {
                                  return plan_allreduce(e, args_of(s, r, count, type, op));
                                }),
                   algo::CollectiveKind::Allreduce, count, type, op);
}

std::unique_ptr<Operation> reduce_scatter_op(Engine& e, const void* send, void* recv, size_t count, DataType type,
                                             ReduceOp op) {
  check_buffers(e, "reduce_scatter", send, recv, count, type);
  const size_t block = count * size_of(type);
  return signed_op(e,
                   with_staging(e, "reduce_scatter", send, block * static_cast<size_t>(e.size()), recv, block,
                                [&e, count, type, op](const std::byte* s, std::byte* r) {
                                  return plan_ring(e, algo::RingMode::ReduceScatter, "reduce_scatter",
                                                   args_of(s, r, count, type, op));
                                }),
                   algo::CollectiveKind::ReduceScatter, count, type, op);
}

std::unique_ptr<Operation> allgather_op(Engine& e, const void* send, void* recv, size_t count, DataType type) {
  check_buffers(e, "allgather", send, recv, count, type);
  const size_t block = count * size_of(type);
  return signed_op(e,
                   with_staging(e, "allgather", send, block, recv, block * static_cast<size_t>(e.size()),
                                [&e, count, type](const std::byte* s, std::byte* r) {
                                  return plan_ring(e, algo::RingMode::AllGather, "allgather",
                                                   args_of(s, r, count, type));
                                }),
                   algo::CollectiveKind::Allgather, count, type);
}

std::unique_ptr<Operation> rooted_op(Engine& e, bool reduce, const void* send, void* recv, size_t count, DataType type,
                                     ReduceOp op, int root) {
  const char* name = reduce ? "reduce" : "broadcast";
  check_root(e, name, root);
  const bool is_root = e.rank() == root;
  // broadcast reads send on the root only; reduce writes recv on the root only.
  check_buffers(e, name, send, recv, count, type, reduce || is_root, !reduce || is_root);
  if (reduce && !is_root) recv = nullptr;
  if (!reduce && !is_root) send = nullptr;
  const size_t bytes = count * size_of(type);
  return signed_op(e,
                   with_staging(e, name, send, send ? bytes : 0, recv, recv ? bytes : 0,
                                [&e, reduce, count, type, op, root](const std::byte* s, std::byte* r) {
                                  return plan_rooted(e, args_of(s, r, count, type, op, root), reduce);
                                }),
                   reduce ? algo::CollectiveKind::Reduce : algo::CollectiveKind::Broadcast, count, type,
                   reduce ? op : ReduceOp::Sum, root);
}

}  // namespace

// The blocking forms wait, driving the engine themselves.

Work Communicator::iallreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op) {
  return Work(engine_->submit(allreduce_op(*engine_, sendbuf, recvbuf, count, type, op), true));
}
void Communicator::allreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op) {
  Work(engine_->submit(allreduce_op(*engine_, sendbuf, recvbuf, count, type, op), false)).wait();
}

Work Communicator::ireduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op) {
  return Work(engine_->submit(reduce_scatter_op(*engine_, sendbuf, recvbuf, recvcount, type, op), true));
}
void Communicator::reduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op) {
  Work(engine_->submit(reduce_scatter_op(*engine_, sendbuf, recvbuf, recvcount, type, op), false)).wait();
}

Work Communicator::iallgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type) {
  return Work(engine_->submit(allgather_op(*engine_, sendbuf, recvbuf, sendcount, type), true));
}
void Communicator::allgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type) {
  Work(engine_->submit(allgather_op(*engine_, sendbuf, recvbuf, sendcount, type), false)).wait();
}

Work Communicator::ibroadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root) {
  return Work(engine_->submit(rooted_op(*engine_, false, sendbuf, recvbuf, count, type, ReduceOp::Sum, root), true));
}
void Communicator::broadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root) {
  Work(engine_->submit(rooted_op(*engine_, false, sendbuf, recvbuf, count, type, ReduceOp::Sum, root), false)).wait();
}

Work Communicator::ireduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root) {
  return Work(engine_->submit(rooted_op(*engine_, true, sendbuf, recvbuf, count, type, op, root), true));
}
void Communicator::reduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root) {
  Work(engine_->submit(rooted_op(*engine_, true, sendbuf, recvbuf, count, type, op, root), false)).wait();
}

Work Communicator::ibarrier() { return Work(engine_->submit(plan_barrier(*engine_), true)); }
void Communicator::barrier() { Work(engine_->submit(plan_barrier(*engine_), false)).wait(); }

}  // namespace ringlink
