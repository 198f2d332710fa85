#include "ringlink/communicator.h"

#include <fmt/format.h>

#include "comm/engine.h"
#include "comm/operation.h"
#include "comm/stream_order.h"
#include "common/cuda_driver.h"
#include "common/host_buffer.h"

namespace ringlink {

using detail::Engine;
using detail::Operation;
using detail::OpContext;
using detail::Progress;
using detail::WorkState;

// ---- Work -----------------------------------------------------------------------------------

bool Work::test() {
  if (!state_) return true;
  if (state_->status.load(std::memory_order_acquire) == WorkState::Pending && state_->engine)
    state_->engine->test(*state_);
  int s = state_->status.load(std::memory_order_acquire);
  if (s == WorkState::Failed) std::rethrow_exception(state_->error);
  return s == WorkState::Done;
}

void Work::wait() {
  if (!state_) return;
  if (state_->status.load(std::memory_order_acquire) == WorkState::Pending)
    state_->engine->wait(*state_, Deadline::never(), false);
  if (state_->status.load(std::memory_order_acquire) == WorkState::Failed) std::rethrow_exception(state_->error);
}

void Work::wait(std::chrono::milliseconds timeout) {
  if (!state_) return;
  if (state_->status.load(std::memory_order_acquire) == WorkState::Pending)
    state_->engine->wait(*state_, Deadline::after(timeout), true);
  if (state_->status.load(std::memory_order_acquire) == WorkState::Failed) std::rethrow_exception(state_->error);
}

bool Work::completed() const { return !state_ || state_->status.load(std::memory_order_acquire) != WorkState::Pending; }

std::exception_ptr Work::error() const {
  if (!state_ || state_->status.load(std::memory_order_acquire) != WorkState::Failed) return nullptr;
  return state_->error;
}

// ---- point-to-point operations --------------------------------------------------------------

namespace {

// Device buffers over a transport that moves host memory go through the staging layer: the
// message is copied to (from) pinned host memory by the device's copy engine, and the send is
// posted once that copy completed (the receive completes once the copy back did).
class PointToPoint final : public Operation {
  template <typename Fn>
  auto guarded(Fn fn) {
    try {
      return fn();
    } catch (const std::runtime_error& e) {
      throw TransportError(rank_, peer_, name(), fmt::format("staging a CUDA buffer: {}", e.what()));
    }
  }

 public:
  PointToPoint(Engine& e, bool send, void* buf, size_t bytes, int peer, uint64_t tag)
      : rank_(e.rank()), send_(send), buf_(buf), bytes_(bytes), peer_(peer), tag_(tag) {
    if (bytes_ && e.is_device_memory(buf_)) {
      device_ = &e.device_staging(name());
      if (device_->wire_on_device()) device_ = nullptr;  // the transport takes device memory itself
    }
  }
  ~PointToPoint() override {
    // A pinned copy still in flight (the operation failed) keeps its memory.
    if (!staged_) return;
    if (pinned_ && !device_->ops().done(fence_)) return;
    if (pinned_) device_->ops().unpin(staged_);
    ::operator delete(staged_, std::align_val_t{4096});
  }
  const char* name() const override { return send_ ? "send" : "recv"; }
  bool is_point_to_point() const override { return true; }
  int waiting_on() const override { return peer_; }

  void start(const OpContext& ctx) override {
    if (!device_) {
      req_ = send_ ? ctx.isend(peer_, buf_, bytes_, nullptr, tag_) : ctx.irecv(peer_, buf_, bytes_, nullptr, tag_);
      return;
    }
    staged_ = static_cast<std::byte*>(::operator new(bytes_, std::align_val_t{4096}));
    guarded([&] {
      device_->ops().pin(staged_, bytes_);
      pinned_ = true;
      if (send_) fence_ = device_->ops().copy(staged_, buf_, bytes_, {});
    });
    if (!send_) req_ = ctx.irecv(peer_, staged_, bytes_, nullptr, tag_);
  }
  Progress advance(const OpContext& ctx) override {
    if (!device_) return req_->test() ? Progress::Done : Progress::Waiting;
    if (send_) {
      if (!req_) {
        if (!guarded([&] { return device_->ops().done(fence_); })) return Progress::Waiting;
        req_ = ctx.isend(peer_, staged_, bytes_, nullptr, tag_);
        return Progress::Moved;
      }
      return req_->test() ? Progress::Done : Progress::Waiting;
    }
    if (!copied_) {
      if (!req_->test()) return Progress::Waiting;
      guarded([&] { fence_ = device_->ops().copy(buf_, staged_, req_->bytes(), {}); });
      copied_ = true;
    }
    return guarded([&] { return device_->ops().done(fence_); }) ? Progress::Done : Progress::Moved;
  }

 private:
  int rank_;
  bool send_;
  void* buf_;
  size_t bytes_;
  int peer_;
  uint64_t tag_;
  detail::DeviceStaging* device_ = nullptr;
  std::byte* staged_ = nullptr;  // pinned host image of the message
  bool pinned_ = false, copied_ = false;
  detail::Fence fence_ = 0;
  std::unique_ptr<Request> req_;
};

Options with_identity_from_environment(Options o) {
  if (o.world_size < 0 || o.rank < 0) {
    Options env = Options::from_environment();
    if (o.rank < 0) o.rank = env.rank;
    if (o.world_size < 0) o.world_size = env.world_size;
    if (o.local_rank < 0) o.local_rank = env.local_rank;
    if (o.local_world_size < 0) o.local_world_size = env.local_world_size;
    if (o.master_addr.empty()) o.master_addr = env.master_addr;
    if (o.master_port == 0) o.master_port = env.master_port;
    if (o.job_token.empty()) {
      o.job_token = env.job_token;
      o.job_token_derived = env.job_token_derived;
    }
    if (o.launcher == Launcher::None) o.launcher = env.launcher;
  } else if (o.launcher == Launcher::None) {
    o.launcher = Launcher::Explicit;
  }
  if (o.local_rank < 0) o.local_rank = o.rank;
  if (o.local_world_size < 0) o.local_world_size = o.world_size;
  return o;
}

}  // namespace

// ---- Communicator ---------------------------------------------------------------------------

Communicator::Communicator(Options options) : engine_(Engine::create(with_identity_from_environment(std::move(options)))) {}

Communicator::~Communicator() {
  if (engine_) engine_->shutdown();
}

int Communicator::rank() const { return engine_->rank(); }
int Communicator::size() const { return engine_->size(); }
const Options& Communicator::options() const { return engine_->options(); }
std::string Communicator::transport_name() const { return engine_->transport_name(); }

namespace {
// Checked on the calling thread: argument errors never reach the engine.
std::unique_ptr<Operation> point_to_point(Engine& e, bool send, const void* buf, size_t bytes, int peer,
                                          uint64_t tag) {
  const char* op = send ? "send" : "recv";
  if (peer < 0 || peer >= e.size())
    throw InvalidArgumentError(e.rank(), peer, op, fmt::format("peer {} is out of range for {} ranks", peer, e.size()));
  if (peer == e.rank()) throw InvalidArgumentError(e.rank(), peer, op, "a rank cannot send to or receive from itself");
  if (tag >= detail::kUserTagLimit)
    throw InvalidArgumentError(e.rank(), peer, op, fmt::format("tag {} is not below 2^39", tag));
  return std::make_unique<PointToPoint>(e, send, const_cast<void*>(buf), bytes, peer, tag);
}

// Device buffers follow the caller's stream (the legacy default one without a stream); with a
// stream, its later work also waits for the message.
std::unique_ptr<Operation> ordered_point_to_point(Engine& e, bool send, const void* buf, size_t bytes, int peer,
                                                  uint64_t tag, const CudaStream* stream) {
  auto op = point_to_point(e, send, buf, bytes, peer, tag);
  const bool device = bytes && e.is_device_memory(buf);
  if (stream && bytes && !device)
    throw InvalidArgumentError(e.rank(), peer, op->name(), "the stream-ordered calls take device buffers");
  if (!stream && !device) return op;
  detail::DeviceStaging& staging = e.device_staging(op->name());
  return detail::stream_ordered(e.rank(), staging, stream ? stream->handle : cuda::kCuStreamLegacy, stream != nullptr,
                                std::move(op));
}
}  // namespace

Work Communicator::isend(const void* buf, size_t bytes, int peer, uint64_t tag) {
  return Work(engine_->submit(ordered_point_to_point(*engine_, true, buf, bytes, peer, tag, nullptr), true));
}

Work Communicator::irecv(void* buf, size_t bytes, int peer, uint64_t tag) {
  return Work(engine_->submit(ordered_point_to_point(*engine_, false, buf, bytes, peer, tag, nullptr), true));
}

void Communicator::send(const void* buf, size_t bytes, int peer, uint64_t tag) {
  Work(engine_->submit(ordered_point_to_point(*engine_, true, buf, bytes, peer, tag, nullptr), false)).wait();
}

void Communicator::recv(void* buf, size_t bytes, int peer, uint64_t tag) {
  Work(engine_->submit(ordered_point_to_point(*engine_, false, buf, bytes, peer, tag, nullptr), false)).wait();
}

Work Communicator::isend(const void* buf, size_t bytes, int peer, uint64_t tag, CudaStream stream) {
  return Work(engine_->submit(ordered_point_to_point(*engine_, true, buf, bytes, peer, tag, &stream), true));
}

Work Communicator::irecv(void* buf, size_t bytes, int peer, uint64_t tag, CudaStream stream) {
  return Work(engine_->submit(ordered_point_to_point(*engine_, false, buf, bytes, peer, tag, &stream), true));
}

}  // namespace ringlink
