// The collective calls of Communicator: check arguments, pick an algorithm, submit the schedule.
#include <cstring>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "algorithms/common.h"
#include "algorithms/ring.h"
#include "algorithms/select.h"
#include "algorithms/small.h"
#include "algorithms/tree.h"
#include "comm/engine.h"
#include "common/log.h"
#include "ringlink/communicator.h"

namespace ringlink {

using detail::Engine;
using detail::Operation;

namespace {

// One rank: the result is the input, put where the caller wants it.
class LocalCopy final : public Operation {
 public:
  LocalCopy(const char* name, const void* src, void* dst, size_t bytes)
      : name_(name), src_(src), dst_(dst), bytes_(bytes) {}
  const char* name() const override { return name_; }
  void start(detail::OpContext&) override {
    if (dst_ && src_ && dst_ != src_ && bytes_) std::memmove(dst_, src_, bytes_);
  }
  bool advance(detail::OpContext&) override { return true; }

 private:
  const char* name_;
  const void* src_;
  void* dst_;
  size_t bytes_;
};

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

// Logs each distinct (collective, size, choice) once at INFO, so a training run's log stays short.
void log_choice(const Engine& e, const char* op, size_t bytes, const std::string& what) {
  if (!log::enabled(LogLevel::Info)) return;
  static std::mutex mu;
  static std::set<std::string> seen;
  std::string key = fmt::format("{} {} {} {}", static_cast<const void*>(&e), op, bytes, what);
  std::lock_guard lk(mu);
  if (seen.insert(key).second) log::info("{} of {} bytes over {} ranks: {}", op, bytes, e.size(), what);
}

algo::Args args_of(const void* send, void* recv, size_t count, DataType type, ReduceOp op = ReduceOp::Sum,
                   int root = 0) {
  return algo::Args{static_cast<const std::byte*>(send), static_cast<std::byte*>(recv), count, type, op, root};
}

std::unique_ptr<Operation> plan_allreduce(const Engine& e, const algo::Args& a) {
  const size_t bytes = a.count * a.elem();
  if (e.size() == 1) return std::make_unique<LocalCopy>("allreduce", a.send, a.recv, bytes);
  auto c = algo::choose_allreduce(bytes, e.size(), e.algorithm(), bytes <= e.slot_bytes(), e.cost_model(),
                                  e.chunk_bytes());
  log_choice(e, "allreduce", bytes,
             fmt::format("{} (model: ring {:.1f} us, tree {:.1f} us, recursive doubling {})", algo::to_string(c.algo),
                         c.ring_us, c.tree_us, c.rd_us < 0 ? std::string("n/a") : fmt::format("{:.1f} us", c.rd_us)));
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

std::unique_ptr<Operation> plan_rooted(const Engine& e, const algo::Args& a, bool reduce) {
  const size_t bytes = a.count * a.elem();
  const char* name = reduce ? "reduce" : "broadcast";
  if (e.size() == 1) return std::make_unique<LocalCopy>(name, a.send, a.recv, bytes);
  auto shape = algo::choose_rooted_shape(bytes, e.size(), e.algorithm(), e.cost_model(), e.chunk_bytes());
  auto tree_shape = shape == algo::RootedShape::Chain ? algo::TreeShape::Chain : algo::TreeShape::Binary;
  log_choice(e, name, bytes, shape == algo::RootedShape::Chain ? "pipelined chain" : "binary tree");
  if (reduce) return algo::make_tree_reduce(a, e.rank(), e.size(), tree_shape, e.chunk_bytes(), e.pipeline_depth());
  return algo::make_tree_broadcast(a, e.rank(), e.size(), tree_shape, e.chunk_bytes(), e.pipeline_depth());
}

}  // namespace

// Each collective: validate on the calling thread (argument errors never reach the engine), plan,
// submit; the blocking form waits, driving the engine itself.

Work Communicator::iallreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op) {
  check_buffers(*engine_, "allreduce", sendbuf, recvbuf, count, type);
  return Work(engine_->submit(plan_allreduce(*engine_, args_of(sendbuf, recvbuf, count, type, op)), true));
}
void Communicator::allreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op) {
  check_buffers(*engine_, "allreduce", sendbuf, recvbuf, count, type);
  Work(engine_->submit(plan_allreduce(*engine_, args_of(sendbuf, recvbuf, count, type, op)), false)).wait();
}

namespace {
std::unique_ptr<Operation> plan_reduce_scatter(const Engine& e, const void* send, void* recv, size_t count,
                                               DataType type, ReduceOp op) {
  if (e.size() == 1) return std::make_unique<LocalCopy>("reduce_scatter", send, recv, count * size_of(type));
  log_choice(e, "reduce_scatter", count * size_of(type) * static_cast<size_t>(e.size()), "ring");
  return algo::make_ring(algo::RingMode::ReduceScatter, args_of(send, recv, count, type, op), e.rank(), e.size(),
                         e.chunk_bytes(), e.pipeline_depth());
}
std::unique_ptr<Operation> plan_allgather(const Engine& e, const void* send, void* recv, size_t count, DataType type) {
  if (e.size() == 1) return std::make_unique<LocalCopy>("allgather", send, recv, count * size_of(type));
  log_choice(e, "allgather", count * size_of(type) * static_cast<size_t>(e.size()), "ring");
  return algo::make_ring(algo::RingMode::AllGather, args_of(send, recv, count, type), e.rank(), e.size(),
                         e.chunk_bytes(), e.pipeline_depth());
}
}  // namespace

Work Communicator::ireduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op) {
  check_buffers(*engine_, "reduce_scatter", sendbuf, recvbuf, recvcount, type);
  return Work(engine_->submit(plan_reduce_scatter(*engine_, sendbuf, recvbuf, recvcount, type, op), true));
}
void Communicator::reduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op) {
  check_buffers(*engine_, "reduce_scatter", sendbuf, recvbuf, recvcount, type);
  Work(engine_->submit(plan_reduce_scatter(*engine_, sendbuf, recvbuf, recvcount, type, op), false)).wait();
}

Work Communicator::iallgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type) {
  check_buffers(*engine_, "allgather", sendbuf, recvbuf, sendcount, type);
  return Work(engine_->submit(plan_allgather(*engine_, sendbuf, recvbuf, sendcount, type), true));
}
void Communicator::allgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type) {
  check_buffers(*engine_, "allgather", sendbuf, recvbuf, sendcount, type);
  Work(engine_->submit(plan_allgather(*engine_, sendbuf, recvbuf, sendcount, type), false)).wait();
}

Work Communicator::ibroadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root) {
  check_root(*engine_, "broadcast", root);
  check_buffers(*engine_, "broadcast", sendbuf, recvbuf, count, type, rank() == root, true);
  return Work(engine_->submit(plan_rooted(*engine_, args_of(sendbuf, recvbuf, count, type, ReduceOp::Sum, root), false),
                              true));
}
void Communicator::broadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root) {
  check_root(*engine_, "broadcast", root);
  check_buffers(*engine_, "broadcast", sendbuf, recvbuf, count, type, rank() == root, true);
  Work(engine_->submit(plan_rooted(*engine_, args_of(sendbuf, recvbuf, count, type, ReduceOp::Sum, root), false),
                       false))
      .wait();
}

Work Communicator::ireduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root) {
  check_root(*engine_, "reduce", root);
  check_buffers(*engine_, "reduce", sendbuf, recvbuf, count, type, true, rank() == root);
  return Work(engine_->submit(plan_rooted(*engine_, args_of(sendbuf, recvbuf, count, type, op, root), true), true));
}
void Communicator::reduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root) {
  check_root(*engine_, "reduce", root);
  check_buffers(*engine_, "reduce", sendbuf, recvbuf, count, type, true, rank() == root);
  Work(engine_->submit(plan_rooted(*engine_, args_of(sendbuf, recvbuf, count, type, op, root), true), false)).wait();
}

namespace {
std::unique_ptr<Operation> plan_barrier(const Engine& e) {
  if (e.size() == 1) return std::make_unique<LocalCopy>("barrier", nullptr, nullptr, 0);
  return algo::make_barrier(e.rank(), e.size());
}
}  // namespace

Work Communicator::ibarrier() { return Work(engine_->submit(plan_barrier(*engine_), true)); }
void Communicator::barrier() { Work(engine_->submit(plan_barrier(*engine_), false)).wait(); }

}  // namespace ringlink
