#include "ringlink/communicator.h"

#include <fmt/format.h>

#include "comm/engine.h"
#include "comm/operation.h"
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

class PointToPoint final : public Operation {
 public:
  PointToPoint(const Engine& e, bool send, void* buf, size_t bytes, int peer, uint64_t tag)
      : rank_(e.rank()),
        device_direct_(e.transport_supports(MemoryKind::Cuda)),
        send_(send),
        buf_(buf),
        bytes_(bytes),
        peer_(peer),
        tag_(tag) {}
  const char* name() const override { return send_ ? "send" : "recv"; }
  bool is_point_to_point() const override { return true; }
  int waiting_on() const override { return peer_; }

  void start(const OpContext& ctx) override {
    void* wire = buf_;
    if (bytes_ && !device_direct_ && cuda::is_device_pointer(buf_)) {
      // The transport moves host memory: stage through a buffer of this message's own (point-to-
      // point operations run concurrently, so they cannot share the collectives' scratch).
      staged_ = HostBuffer(bytes_);
      wire = staged_.data();
      if (send_) copy([&] { cuda::copy_to_host(wire, buf_, bytes_); });
    }
    req_ = send_ ? ctx.isend(peer_, wire, bytes_, nullptr, tag_) : ctx.irecv(peer_, wire, bytes_, nullptr, tag_);
  }
  Progress advance(const OpContext&) override {
    if (!req_->test()) return Progress::Waiting;
    if (!send_ && staged_.data()) copy([&] { cuda::copy_to_device(buf_, staged_.data(), req_->bytes()); });
    return Progress::Done;
  }

 private:
  template <typename Fn>
  void copy(Fn fn) {
    try {
      fn();
    } catch (const std::runtime_error& e) {
      throw TransportError(rank_, peer_, name(), fmt::format("staging a CUDA buffer: {}", e.what()));
    }
  }

  int rank_;
  bool device_direct_;
  bool send_;
  void* buf_;
  size_t bytes_;
  int peer_;
  uint64_t tag_;
  HostBuffer staged_;
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
std::unique_ptr<Operation> point_to_point(const Engine& e, bool send, const void* buf, size_t bytes, int peer,
                                          uint64_t tag) {
  const char* op = send ? "send" : "recv";
  if (peer < 0 || peer >= e.size())
    throw InvalidArgumentError(e.rank(), peer, op, fmt::format("peer {} is out of range for {} ranks", peer, e.size()));
  if (peer == e.rank()) throw InvalidArgumentError(e.rank(), peer, op, "a rank cannot send to or receive from itself");
  if (tag >= detail::kUserTagLimit)
    throw InvalidArgumentError(e.rank(), peer, op, fmt::format("tag {} is not below 2^39", tag));
  return std::make_unique<PointToPoint>(e, send, const_cast<void*>(buf), bytes, peer, tag);
}
}  // namespace

Work Communicator::isend(const void* buf, size_t bytes, int peer, uint64_t tag) {
  return Work(engine_->submit(point_to_point(*engine_, true, buf, bytes, peer, tag), true));
}

Work Communicator::irecv(void* buf, size_t bytes, int peer, uint64_t tag) {
  return Work(engine_->submit(point_to_point(*engine_, false, buf, bytes, peer, tag), true));
}

void Communicator::send(const void* buf, size_t bytes, int peer, uint64_t tag) {
  Work(engine_->submit(point_to_point(*engine_, true, buf, bytes, peer, tag), false)).wait();
}

void Communicator::recv(void* buf, size_t bytes, int peer, uint64_t tag) {
  Work(engine_->submit(point_to_point(*engine_, false, buf, bytes, peer, tag), false)).wait();
}

}  // namespace ringlink
