#include "comm/cuda_staging.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "common/cuda_driver.h"
#include "ringlink/error.h"

namespace ringlink::detail {
namespace {

class Staged final : public Operation {
 public:
  Staged(int rank, HostScratch& scratch, const char* name, const void* send, size_t send_bytes, void* recv,
         size_t recv_bytes, HostPlan plan)
      : rank_(rank),
        scratch_(scratch),
        name_(name),
        send_(static_cast<const std::byte*>(send)),
        recv_(static_cast<std::byte*>(recv)),
        send_bytes_(send_bytes),
        recv_bytes_(recv_bytes),
        send_dev_(cuda::is_device_pointer(send)),
        recv_dev_(cuda::is_device_pointer(recv)),
        plan_(std::move(plan)) {}

  const char* name() const override { return name_; }
  int waiting_on() const override { return inner_ ? inner_->waiting_on() : -1; }

  void start(const OpContext& ctx) override {
    const std::byte* host_send = send_;
    std::byte* host_recv = recv_;
    try {
      auto lo = [](const std::byte* p) { return reinterpret_cast<uintptr_t>(p); };
      bool overlap = send_dev_ && recv_dev_ && lo(send_) < lo(recv_) + recv_bytes_ && lo(recv_) < lo(send_) + send_bytes_;
      if (overlap) {
        // In place: one host image of the union, same relative layout.
        uintptr_t base = std::min(lo(send_), lo(recv_));
        size_t span = std::max(lo(send_) + send_bytes_, lo(recv_) + recv_bytes_) - base;
        std::byte* host = scratch_.ensure(span);
        cuda::copy_to_host(host, reinterpret_cast<const void*>(base), span);
        host_send = host + (lo(send_) - base);
        host_recv = host + (lo(recv_) - base);
      } else {
        std::byte* host = scratch_.ensure((send_dev_ ? send_bytes_ : 0) + (recv_dev_ ? recv_bytes_ : 0));
        if (send_dev_) {
          cuda::copy_to_host(host, send_, send_bytes_);
          host_send = host;
          host += send_bytes_;
        }
        if (recv_dev_) host_recv = host;
      }
    } catch (const std::runtime_error& e) {
      throw TransportError(rank_, -1, name_, fmt::format("staging a CUDA buffer through host memory: {}", e.what()));
    }
    host_recv_ = host_recv;
    inner_ = plan_(host_send, host_recv);
    inner_->start(ctx);
  }

  Progress advance(const OpContext& ctx) override {
    Progress p = inner_->advance(ctx);
    if (p != Progress::Done) return p;
    if (recv_dev_) {
      try {
        cuda::copy_to_device(recv_, host_recv_, recv_bytes_);
      } catch (const std::runtime_error& e) {
        throw TransportError(rank_, -1, name_, fmt::format("copying the result to the GPU: {}", e.what()));
      }
    }
    return Progress::Done;
  }

 private:
  int rank_;
  HostScratch& scratch_;
  const char* name_;
  const std::byte* send_;
  std::byte* recv_;
  size_t send_bytes_, recv_bytes_;
  bool send_dev_, recv_dev_;
  HostPlan plan_;
  std::unique_ptr<Operation> inner_;
  std::byte* host_recv_ = nullptr;
};

}  // namespace

std::unique_ptr<Operation> stage_through_host(int rank, HostScratch& scratch, const char* name, const void* send,
                                              size_t send_bytes, void* recv, size_t recv_bytes, HostPlan plan) {
  return std::make_unique<Staged>(rank, scratch, name, send, send_bytes, recv, recv_bytes, std::move(plan));
}

}  // namespace ringlink::detail
