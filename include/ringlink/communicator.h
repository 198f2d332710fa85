// ringlink::Communicator: a group of ranks that exchange messages and run collectives.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>

#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"

namespace ringlink {

// A CUDA stream (cudaStream_t or CUstream) as an opaque handle: null is the legacy default stream.
struct CudaStream {
  void* handle = nullptr;
};

namespace detail {
struct WorkState;
class Engine;
}  // namespace detail

// The handle of an asynchronous operation. Operations run on the communicator's progress
// thread in issue order; the caller blocks only in wait().
class Work {
 public:
  Work() = default;  // an empty handle counts as completed

  // True once the operation finished successfully; throws its error if it failed.
  // Never blocks (it may advance the engine once if nobody else is).
  bool test();

  // Waits until completion and throws the operation's error if it failed. Termination is
  // guaranteed by the operation's own deadline (Options::timeout of silence from a peer).
  void wait();

  // As wait(), but throws TimeoutError if not finished within `timeout`; the operation itself
  // continues and can be waited on again.
  void wait(std::chrono::milliseconds timeout);

  bool completed() const;          // finished, successfully or not
  std::exception_ptr error() const;  // the failure, or null

 private:
  friend class Communicator;
  explicit Work(std::shared_ptr<detail::WorkState> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::WorkState> state_;
};

class Communicator {
 public:
  // Joins the group described by `options`; identity fields left unset (-1 / empty) are read
  // from the environment (ringlink-run, torchrun, mpirun, srun). Every rank must create its
  // communicators in the same order. Throws a typed Error naming what is wrong.
  explicit Communicator(Options options = Options::from_environment());
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  const Options& options() const;
  std::string transport_name() const;

  // ---- point to point (host or CUDA device memory) ----
  // A send matches the receive on `peer` with the same tag; tags below 2^39.
  Work isend(const void* buf, size_t bytes, int peer, uint64_t tag = 0);
  Work irecv(void* buf, size_t bytes, int peer, uint64_t tag = 0);
  void send(const void* buf, size_t bytes, int peer, uint64_t tag = 0);
  void recv(void* buf, size_t bytes, int peer, uint64_t tag = 0);

  // ---- collectives ----
  // The i-prefixed calls return at once; the plain ones wait. Every rank must issue the same
  // collectives in the same order with matching counts, types, ops and roots. Buffers are host
  // memory or CUDA device memory (detected per pointer); `count` is in elements.
  //
  // In place: allreduce/reduce/broadcast when sendbuf == recvbuf; allgather when
  // sendbuf == recvbuf + rank * count elements; reduce_scatter when recvbuf == sendbuf + rank *
  // recvcount elements (the nccl conventions).

  // recvbuf[i] = op over ranks of sendbuf[i], on every rank. Avg divides the sum by size().
  Work iallreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op);
  void allreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op);
  Work iallreduce(void* buf, size_t count, DataType type, ReduceOp op) {
    return iallreduce(buf, buf, count, type, op);
  }
  void allreduce(void* buf, size_t count, DataType type, ReduceOp op) { allreduce(buf, buf, count, type, op); }

  // sendbuf holds size() * recvcount elements; rank r receives the reduction of block r.
  Work ireduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op);
  void reduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op);

  // recvbuf (size() * sendcount elements) gets every rank's sendbuf, in rank order.
  Work iallgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type);
  void allgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type);

  // root's sendbuf lands in every rank's recvbuf (sendbuf is read on root only).
  Work ibroadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root);
  void broadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root);
  void broadcast(void* buf, size_t count, DataType type, int root) { broadcast(buf, buf, count, type, root); }

  // The reduction lands in root's recvbuf (recvbuf is written on root only).
  Work ireduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root);
  void reduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root);

  Work ibarrier();
  void barrier();

  // ---- stream order (as nccl's): the calls above, on a CUDA stream ----
  // Each returns at once, without synchronizing the host. The operation starts after the work
  // queued on `stream` before the call, and work queued on `stream` after the call waits until
  // the operation's result is in place (the stream waits on a flag the engine sets; this needs a
  // driver with stream memory operations, else the call throws TransportError). The Work
  // completes when the device result is ready; wait() is optional. Device buffers are read and
  // written only on the engine's own stream, between those two points. Without a usable GPU
  // these throw InvalidArgumentError.
  Work isend(const void* buf, size_t bytes, int peer, uint64_t tag, CudaStream stream);
  Work irecv(void* buf, size_t bytes, int peer, uint64_t tag, CudaStream stream);
  Work iallreduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, CudaStream stream);
  Work ireduce_scatter(const void* sendbuf, void* recvbuf, size_t recvcount, DataType type, ReduceOp op,
                       CudaStream stream);
  Work iallgather(const void* sendbuf, void* recvbuf, size_t sendcount, DataType type, CudaStream stream);
  Work ibroadcast(const void* sendbuf, void* recvbuf, size_t count, DataType type, int root, CudaStream stream);
  Work ireduce(const void* sendbuf, void* recvbuf, size_t count, DataType type, ReduceOp op, int root,
               CudaStream stream);
  Work ibarrier(CudaStream stream);

 private:
  std::shared_ptr<detail::Engine> engine_;
};

}  // namespace ringlink
