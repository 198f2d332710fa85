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
#include "comm/engine.h"
#include "comm/stream_order.h"
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

algo::Args args_of(detail::DeviceStaging* device, const void* send, void* recv, size_t count, DataType type,
                   ReduceOp op = ReduceOp::Sum, int root = 0) {
  return algo::Args{static_cast<const std::byte*>(send), static_cast<std::byte*>(recv), count, type, op, root, device};
}

// One rank: the result is the input, put where the caller wants it.
std::unique_ptr<Operation> local_copy(const char* name, const algo::Args& a, const void* src, void* dst,
                                      size_t bytes) {
  if (a.device) return detail::device_copy(name, *a.device, src, dst, bytes);
  return std::make_unique<LocalCopy>(name, src, dst, bytes);
}

// The compressed wire format a reduction over the ring carries: the communicator's, for float32
// over host buffers on more than one rank; nothing for other types (integers stay exact, the
// 16-bit and float64 types run as they are) and for device buffers (their staging path moves
// the values as they are).
WireDtype wire_for(const Engine& e, const algo::Args& a) {
  if (a.type != DataType::Float32 || a.device || e.size() == 1) return WireDtype::Off;
  return e.options().wire_dtype;
}

algo::Signature signature_of(algo::CollectiveKind kind, size_t count, DataType type, ReduceOp op = ReduceOp::Sum,
                             int root = 0, WireDtype wire = WireDtype::Off) {
  return algo::Signature{.kind = kind, .count = count, .type = type, .op = op, .root = root, .wire = wire};
}

// Every collective on more than one rank carries its signature (algorithms/signature.h).
std::unique_ptr<Operation> signed_op(const Engine& e, std::unique_ptr<Operation> schedule, const algo::Signature& sig) {
  if (e.size() == 1) return schedule;
  return algo::with_signature(std::move(schedule), sig, e.rank(), e.size());
}

// Recursive doubling, the ring or the tree, by the cost model (logged once per size).
algo::AllreduceAlgo allreduce_choice(const Engine& e, const algo::Args& a) {
  const size_t bytes = a.count * a.elem();
  if (a.wire != WireDtype::Off) {
    // Only the ring carries a compressed format: it rounds each partial sum at most n times.
    log_choice(e, "allreduce", bytes, [&] { return fmt::format("ring (wire {})", to_string(a.wire)); });
    return algo::AllreduceAlgo::Ring;
  }
  // Recursive doubling works on whole vectors of at most a host slot: device buffers take the
  // chunk pipeline.
  const bool rd_possible = bytes <= e.slot_bytes() && !a.device;
  auto c = algo::choose_allreduce(bytes, e.size(), e.algorithm(), rd_possible, e.cost_model(), e.chunk_bytes());
  log_choice(e, "allreduce", bytes, [&] {
    return fmt::format("{} (model: ring {:.1f} us, tree {:.1f} us, recursive doubling {})", algo::to_string(c.algo),
                       c.ring_us, c.tree_us, c.rd_us < 0 ? std::string("n/a") : fmt::format("{:.1f} us", c.rd_us));
  });
  return c.algo;
}

// The wire format of an allreduce: a compressed one pays where bandwidth does, so a vector that
// recursive doubling would carry whole (latency-bound) goes exact, and as quick as without it.
WireDtype allreduce_wire(const Engine& e, algo::Args a) {
  const WireDtype wire = wire_for(e, a);
  if (wire == WireDtype::Off) return wire;
  return allreduce_choice(e, a) == algo::AllreduceAlgo::RecursiveDoubling ? WireDtype::Off : wire;
}

// The allreduce's schedule with its signature: recursive doubling checks its own.
std::unique_ptr<Operation> plan_allreduce(const Engine& e, const algo::Args& a, const algo::Signature& sig) {
  const size_t bytes = a.count * a.elem();
  if (e.size() == 1) return local_copy("allreduce", a, a.send, a.recv, bytes);
  switch (allreduce_choice(e, a)) {
    case algo::AllreduceAlgo::RecursiveDoubling:
      return algo::make_recursive_doubling_allreduce(a, sig, e.rank(), e.size());
    case algo::AllreduceAlgo::Tree:
      return signed_op(e, algo::make_tree_allreduce(a, e.rank(), e.size(), e.chunk_bytes(), e.pipeline_depth()), sig);
    case algo::AllreduceAlgo::Ring:
      break;
  }
  return signed_op(
      e, algo::make_ring(algo::RingMode::AllReduce, a, e.rank(), e.size(), e.chunk_bytes(), e.pipeline_depth()), sig);
}

// reduce_scatter and allgather: `a.count` is one rank's block.
std::unique_ptr<Operation> plan_ring(const Engine& e, algo::RingMode mode, const char* name, const algo::Args& a) {
  const size_t block = a.count * a.elem();
  if (e.size() == 1) return local_copy(name, a, a.send, a.recv, block);
  log_choice(e, name, block * static_cast<size_t>(e.size()), [] { return std::string("ring"); });
  return algo::make_ring(mode, a, e.rank(), e.size(), e.chunk_bytes(), e.pipeline_depth());
}

std::unique_ptr<Operation> plan_rooted(const Engine& e, const algo::Args& a, bool reduce) {
  const size_t bytes = a.count * a.elem();
  const char* name = reduce ? "reduce" : "broadcast";
  if (e.size() == 1) return local_copy(name, a, a.send, a.recv, bytes);
  algo::TreeShape shape = algo::choose_rooted_shape(bytes, e.size(), e.algorithm(), e.cost_model(), e.chunk_bytes());
  log_choice(e, name, bytes, [&] { return std::string(algo::to_string(shape)); });
  if (reduce) return algo::make_tree_reduce(a, e.rank(), e.size(), shape, e.chunk_bytes(), e.pipeline_depth());
  return algo::make_tree_broadcast(a, e.rank(), e.size(), shape, e.chunk_bytes(), e.pipeline_depth());
}

// Device buffers go through the staging layer's chunk pipeline; host buffers as they are. A
// collective's buffers are all host or all device memory.
detail::DeviceStaging* staging_for(Engine& e, const char* name, const void* send, const void* recv) {
  const bool send_dev = send && e.is_device_memory(send), recv_dev = recv && e.is_device_memory(recv);
  if (!send_dev && !recv_dev) return nullptr;
  if ((send && !send_dev) || (recv && !recv_dev))
    throw InvalidArgumentError(e.rank(), -1, name,
                               "one buffer is device memory and the other host memory: give both on the device or "
                               "both on the host");
  return &e.device_staging(name);
}

// Operations on device memory follow the caller's stream (the legacy default stream for the
// calls without one); the stream overloads also make the stream's later work wait for them.
std::unique_ptr<Operation> ordered(Engine& e, const algo::Args& a, std::unique_ptr<Operation> op,
                                   const CudaStream* stream) {
  if (stream && !a.device && a.count > 0 && (a.send || a.recv))
    throw InvalidArgumentError(e.rank(), -1, op->name(), "the stream-ordered calls take device buffers");
  if (stream) {
    detail::DeviceStaging& device = e.device_staging(op->name());
    return detail::stream_ordered(e.rank(), device, stream->handle, true, std::move(op));
  }
  if (a.device) return detail::stream_ordered(e.rank(), *a.device, cuda::kCuStreamLegacy, false, std::move(op));
  return op;
}

std::unique_ptr<Operation> plan_barrier(const Engine& e) {
  if (e.size() == 1) return std::make_unique<LocalCopy>("barrier", nullptr, nullptr, 0);
  return signed_op(e, algo::make_barrier(e.rank(), e.size()),
                   signature_of(algo::CollectiveKind::Barrier, 0, DataType::Float32));
}

// ---- Each collective: check its arguments, then plan it.

std::unique_ptr<Operation> allreduce_op(Engine& e, const void* send, void* recv, size_t count, DataType type,
                                        ReduceOp op, const CudaStream* stream = nullptr) {
  check_buffers(e, "allreduce", send, recv, count, type);
  auto a = args_of(staging_for(e, "allreduce", send, recv), send, recv, count, type, op);
  a.wire = allreduce_wire(e, a);
  return ordered(e, a, plan_allreduce(e, a, signature_of(algo::CollectiveKind::Allreduce, count, type, op, 0, a.wire)),
                 stream);
}

// The small-message path: a blocking host allreduce that recursive doubling carries in the
// signature messages' room runs on the calling thread with the engine's buffers when the engine
// is idle (Engine::run_inline), allocating nothing. The messages are those of the queued path.
bool allreduce_inline(Engine& e, const void* send, void* recv, size_t count, DataType type, ReduceOp op) {
  algo::RecursiveDoubling::Buffers* buffers = e.inline_buffers();
  if (!buffers || count > algo::kSignedPayloadMaxBytes / size_of(type)) return false;
  check_buffers(e, "allreduce", send, recv, count, type);
  auto a = args_of(staging_for(e, "allreduce", send, recv), send, recv, count, type, op);
  if (a.device || allreduce_choice(e, a) != algo::AllreduceAlgo::RecursiveDoubling) return false;
  algo::RecursiveDoubling rd(a, signature_of(algo::CollectiveKind::Allreduce, count, type, op, 0, a.wire), e.rank(),
                             e.size(), buffers);
  return e.run_inline(rd);
}

std::unique_ptr<Operation> reduce_scatter_op(Engine& e, const void* send, void* recv, size_t count, DataType type,
                                             ReduceOp op, const CudaStream* stream = nullptr) {
  check_buffers(e, "reduce_scatter", send, recv, count, type);
  auto a = args_of(staging_for(e, "reduce_scatter", send, recv), send, recv, count, type, op);
  a.wire = wire_for(e, a);
  return ordered(e, a,
                 signed_op(e, plan_ring(e, algo::RingMode::ReduceScatter, "reduce_scatter", a),
                           signature_of(algo::CollectiveKind::ReduceScatter, count, type, op, 0, a.wire)),
                 stream);
}

std::unique_ptr<Operation> allgather_op(Engine& e, const void* send, void* recv, size_t count, DataType type,
                                        const CudaStream* stream = nullptr) {
  check_buffers(e, "allgather", send, recv, count, type);
  auto a = args_of(staging_for(e, "allgather", send, recv), send, recv, count, type);
  return ordered(e, a,
                 signed_op(e, plan_ring(e, algo::RingMode::AllGather, "allgather", a),
                           signature_of(algo::CollectiveKind::Allgather, count, type)),
                 stream);
}

std::unique_ptr<Operation> rooted_op(Engine& e, bool reduce, const void* send, void* recv, size_t count, DataType type,
                                     ReduceOp op, int root, const CudaStream* stream = nullptr) {
  const char* name = reduce ? "reduce" : "broadcast";
  check_root(e, name, root);
  const bool is_root = e.rank() == root;
  // broadcast reads send on the root only; reduce writes recv on the root only.
  check_buffers(e, name, send, recv, count, type, reduce || is_root, !reduce || is_root);
  if (reduce && !is_root) recv = nullptr;
  if (!reduce && !is_root) send = nullptr;
  auto a = args_of(staging_for(e, name, send, recv), send, recv, count, type, op, root);
  return ordered(e, a,
                 signed_op(e, plan_rooted(e, a, reduce),
                           signature_of(reduce ? algo::CollectiveKind::Reduce : algo::CollectiveKind::Broadcast, count,
                                        type, reduce ? op : ReduceOp::Sum, root)),
                 stream);
}

}  // namespace

// The blocking forms wait, driving the engine themselves.

Work Communicator::iallreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op) {
  return Work(engine_->submit(allreduce_op(*engine_, sendbuf, recvbuf, count, type, op), true));
}
void Communicator::allreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op) {
  if (allreduce_inline(*engine_, sendbuf, recvbuf, count, type, op)) return;
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
Work Communicator::ibarrier(CudaStream stream) {
  return Work(engine_->submit(ordered(*engine_, algo::Args{}, plan_barrier(*engine_), &stream), true));
}

// ---- The stream-ordered forms: they return at once; the stream orders the rest.

Work Communicator::iallreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op,
                              CudaStream stream) {
  return Work(engine_->submit(allreduce_op(*engine_, sendbuf, recvbuf, count, type, op, &stream), true));
}
Work Communicator::ireduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op,
                                   CudaStream stream) {
  return Work(engine_->submit(reduce_scatter_op(*engine_, sendbuf, recvbuf, recvcount, type, op, &stream), true));
}
Work Communicator::iallgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type, CudaStream stream) {
  return Work(engine_->submit(allgather_op(*engine_, sendbuf, recvbuf, sendcount, type, &stream), true));
}
Work Communicator::ibroadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root,
                              CudaStream stream) {
  return Work(
      engine_->submit(rooted_op(*engine_, false, sendbuf, recvbuf, count, type, ReduceOp::Sum, root, &stream), true));
}
Work Communicator::ireduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root,
                           CudaStream stream) {
  return Work(engine_->submit(rooted_op(*engine_, true, sendbuf, recvbuf, count, type, op, root, &stream), true));
}
void Communicator::barrier() { Work(engine_->submit(plan_barrier(*engine_), false)).wait(); }

}  // namespace ringlink
