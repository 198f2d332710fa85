// The device operations the staging layer's chunk pipeline issues: copies between host and device
// memory, the reduction kernels, and fences to order them. Two implementations: CUDA (driver API,
// one engine-owned stream) and a host-memory stand-in whose worker thread completes operations in
// a shuffled order, so that the pipeline's ordering is tested without a GPU.
//
// Every operation names the fences it must follow; it may run as soon as they are complete and
// in any order relative to other operations (the stand-in does exactly that; CUDA runs them in
// issue order on one stream, which satisfies every declared fence). The host learns completion
// only through done(): it never blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "ringlink/types.h"

namespace ringlink::detail {

// A completion point; 0 is complete from the start.
using Fence = uint64_t;

class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  virtual const char* name() const = 0;

  // Whether `p` is memory of this device (the pipeline's device path is taken for it).
  virtual bool owns(const void* p) const = 0;

  // Copies of `bytes` between any two of host (pinned for CUDA) and device memory.
  virtual Fence copy(void* dst, const void* src, size_t bytes, std::initializer_list<Fence> after) = 0;
  // dst = a (op) b, elementwise, as reduce::combine.
  virtual Fence combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op,
                        std::initializer_list<Fence> after) = 0;
  // buf /= divisor, as reduce::divide.
  virtual Fence divide(void* buf, size_t count, DataType type, int divisor, std::initializer_list<Fence> after) = 0;

  // Whether `f` (and everything it followed) has completed. Never blocks; throws a
  // std::runtime_error when the device reported a failure.
  virtual bool done(Fence f) = 0;

  // Device memory for the staging slots, and host memory the device copies from and to at full
  // speed (CUDA: registered as pinned). Both throw std::runtime_error on failure.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void pin(void* host, size_t bytes) = 0;
  virtual void unpin(void* host) = 0;

  // ---- stream order (CUDA streams; the stand-in has none and ignores these) ----
  // On the caller's thread at call time: remembers the point of `stream` the operation starts after.
  virtual void* mark_stream(void* stream) { (void)stream; return nullptr; }
  // On the driving thread before the first operation: later operations follow that point.
  virtual void follow_mark(void* mark) { (void)mark; }
  virtual void drop_mark(void* mark) { (void)mark; }
  // On the caller's thread at call time: makes work queued on `stream` after this point wait
  // until release_hold(); returns the hold. Throws std::runtime_error where the device cannot.
  virtual void* hold_stream(void* stream) { (void)stream; return nullptr; }
  // On the driving thread once the operation's device result is ready (or it failed).
  virtual void release_hold(void* hold) { (void)hold; }
};

// The CUDA implementation over the dlopen'd driver (null with the reason where there is no GPU).
std::unique_ptr<DeviceOps> make_cuda_device_ops(std::string* why);

// The host-memory stand-in. `seed` drives the completion order (deterministic per seed).
std::unique_ptr<DeviceOps> make_standin_device_ops(uint64_t seed);
// Memory the stand-in treats as device memory (tests allocate their "device" buffers here), freed
// with standin_free. Process-wide, so any stand-in instance recognises it.
void* standin_alloc(size_t bytes);
void standin_free(void* p);

}  // namespace ringlink::detail
