// The host-memory stand-in for a GPU: "device" memory is host memory from standin_alloc, and a
// worker thread completes the queued operations in a random order among those whose fences are
// complete, after random short delays. A pipeline that posts a send before its copy completed, or
// reduces before a received chunk's copy landed, computes wrong results here.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "comm/device_ops.h"
#include "reduce/reduce.h"

namespace ringlink::detail {
namespace {

std::mutex& registry_mu() {
  static std::mutex mu;
  return mu;
}
std::map<uintptr_t, size_t>& registry() {
  static std::map<uintptr_t, size_t> r;  // base -> bytes
  return r;
}

bool in_registry(const void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lk(registry_mu());
  auto& r = registry();
  auto it = r.upper_bound(a);
  if (it == r.begin()) return false;
  --it;
  return a < it->first + std::max<size_t>(it->second, 1);
}

class StandinDevice final : public DeviceOps {
 public:
  explicit StandinDevice(uint64_t seed) : rng_(seed), worker_([this] { run(); }) {}
  ~StandinDevice() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  const char* name() const override { return "stand-in"; }
  bool owns(const void* p) const override { return p && in_registry(p); }

  Fence copy(void* dst, const void* src, size_t bytes, std::initializer_list<Fence> after) override {
    return queue(after, [=] { std::memmove(dst, src, bytes); });
  }
  Fence combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op,
                std::initializer_list<Fence> after) override {
    return queue(after, [=] { reduce::combine(dst, a, b, count, type, op); });
  }
  Fence divide(void* buf, size_t count, DataType type, int divisor, std::initializer_list<Fence> after) override {
    return queue(after, [=] { reduce::divide(buf, count, type, divisor); });
  }
  bool done(Fence f) override {
    std::lock_guard lk(mu_);
    return f == 0 || (f < next_ && !outstanding_.count(f));
  }
  void* allocate(size_t bytes) override { return standin_alloc(bytes); }
  void release(void* p) override { standin_free(p); }
  void pin(void*, size_t) override {}
  void unpin(void*) override {}

 private:
  struct Pending {
    Fence fence;
    std::vector<Fence> after;
    std::function<void()> work;
  };

  template <typename Fn>
  Fence queue(std::initializer_list<Fence> after, Fn fn) {
    std::lock_guard lk(mu_);
    Fence f = next_++;
    outstanding_.insert(f);
    pending_.push_back(Pending{f, std::vector<Fence>(after), std::function<void()>(fn)});
    cv_.notify_all();
    return f;
  }

  bool ready(const Pending& p) const {
    return std::all_of(p.after.begin(), p.after.end(), [&](Fence f) { return f == 0 || !outstanding_.count(f); });
  }

  void run() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !pending_.empty(); });
      if (stop_) return;
      std::vector<size_t> candidates;
      for (size_t i = 0; i < pending_.size(); ++i)
        if (ready(pending_[i])) candidates.push_back(i);
      if (candidates.empty()) {
        cv_.wait(lk);  // a fence from outside the queue cannot exist: fences only name queued work
        continue;
      }
      size_t pick = candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng_)];
      Pending p = std::move(pending_[pick]);
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(pick));
      unsigned delay_us = std::uniform_int_distribution<unsigned>(0, 3)(rng_) == 0
                              ? std::uniform_int_distribution<unsigned>(0, 200)(rng_)
                              : 0;
      lk.unlock();
      if (delay_us) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      p.work();
      lk.lock();
      outstanding_.erase(p.fence);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> pending_;
  std::unordered_set<Fence> outstanding_;
  Fence next_ = 1;
  bool stop_ = false;
  std::mt19937_64 rng_;
  std::thread worker_;  // last: starts after the rest is built
};

}  // namespace

void* standin_alloc(size_t bytes) {
  void* p = ::operator new(std::max<size_t>(bytes, 1), std::align_val_t{64});
  std::lock_guard lk(registry_mu());
  registry()[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

void standin_free(void* p) {
  if (!p) return;
  {
    std::lock_guard lk(registry_mu());
    registry().erase(reinterpret_cast<uintptr_t>(p));
  }
  ::operator delete(p, std::align_val_t{64});
}

std::unique_ptr<DeviceOps> make_standin_device_ops(uint64_t seed) { return std::make_unique<StandinDevice>(seed); }

}  // namespace ringlink::detail
