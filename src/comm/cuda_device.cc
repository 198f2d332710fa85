// DeviceOps on a CUDA GPU through the dlopen'd driver: one non-blocking stream of the engine's in
// the primary context of device 0, an event recorded after every operation (done() queries them
// in issue order), the reduction kernels of src/reduce/cuda, and stream-order marks: an event on
// the caller's stream at call time that the engine's stream waits for.
#include <deque>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "comm/device_ops.h"
#include "common/cuda_driver.h"
#include "reduce/cuda/reduce.h"

namespace ringlink::detail {
namespace {

using namespace ringlink::cuda;

class CudaDevice final : public DeviceOps {
 public:
  CudaDevice(const CudaDriver& d, CUcontext ctx) : d_(d), ctx_(ctx) {
    Current c(*this);
    check(d_.stream_create(&stream_, kCuStreamNonBlocking), "cuStreamCreate");
  }
  ~CudaDevice() override {
    Current c(*this);
    // The engine drains its operations before it lets go of the device; what is left are events.
    for (auto& [f, e] : issued_) d_.event_destroy(e);
    for (CUevent e : spare_) d_.event_destroy(e);
    d_.stream_destroy(stream_);
    // Holds still waited on keep their words: a stream may still read them.
    if (releasing_.empty())
      for (Slab& s : slabs_) d_.mem_free_host(s.host);
  }

  const char* name() const override { return "cuda"; }
  bool owns(const void* p) const override { return p && is_device_pointer(d_, p); }

  Fence copy(void* dst, const void* src, size_t bytes, std::initializer_list<Fence>) override {
    Current c(*this);
    if (bytes)
      check(d_.memcpy_async(reinterpret_cast<CUdeviceptr>(dst), reinterpret_cast<CUdeviceptr>(src), bytes, stream_),
            "cuMemcpyAsync");
    return record();
  }
  Fence combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op,
                std::initializer_list<Fence>) override {
    Current c(*this);
    if (count) reduce::cuda::combine(dst, a, b, count, type, op, stream_);
    return record();
  }
  Fence divide(void* buf, size_t count, DataType type, int divisor, std::initializer_list<Fence>) override {
    Current c(*this);
    if (count) reduce::cuda::divide(buf, count, type, divisor, stream_);
    return record();
  }

  // One stream: an operation's completion implies every earlier one's, so the fences declared by
  // the callers are already honoured by issue order.
  bool done(Fence f) override {
    if (f <= completed_) return true;
    Current c(*this);
    while (!issued_.empty()) {
      CUresult r = d_.event_query(issued_.front().second);
      if (r == kCudaErrorNotReady) break;
      check(r, "cuEventQuery");
      completed_ = issued_.front().first;
      spare_.push_back(issued_.front().second);
      issued_.pop_front();
    }
    return f <= completed_;
  }

  void* allocate(size_t bytes) override {
    Current c(*this);
    CUdeviceptr p = 0;
    check(d_.mem_alloc(&p, bytes ? bytes : 1), "cuMemAlloc");
    return reinterpret_cast<void*>(p);
  }
  void release(void* p) override {
    Current c(*this);
    if (p) d_.mem_free(reinterpret_cast<CUdeviceptr>(p));
  }
  void pin(void* host, size_t bytes) override {
    Current c(*this);
    check(d_.mem_host_register(host, bytes, kCuMemHostRegisterPortable), "cuMemHostRegister");
  }
  void unpin(void* host) override {
    Current c(*this);
    d_.mem_host_unregister(host);
  }

  void* mark_stream(void* stream) override {
    Current c(*this);
    CUevent e = nullptr;
    check(d_.event_create(&e, kCuEventDisableTiming), "cuEventCreate");
    CUresult r = d_.event_record(e, stream);
    if (r != kCudaSuccess) {
      d_.event_destroy(e);
      check(r, "cuEventRecord on the caller's stream");
    }
    return e;
  }
  void follow_mark(void* mark) override {
    if (!mark) return;
    Current c(*this);
    check(d_.stream_wait_event(stream_, mark, 0), "cuStreamWaitEvent");
  }
  void drop_mark(void* mark) override {
    if (!mark) return;
    Current c(*this);
    d_.event_destroy(mark);  // the driver keeps it until the waits on it are resolved
  }

  // A hold is a word of mapped pinned host memory the caller's stream waits on
  // (cuStreamWaitValue32, >= 1); the engine stores 1 when the operation is complete. An event
  // recorded on the caller's stream after the wait tells when the word may be used again.
  void* hold_stream(void* stream) override {
    if (!d_.stream_wait_value32)
      throw std::runtime_error("this CUDA driver has no cuStreamWaitValue32 (stream memory operations)");
    std::lock_guard lk(holds_mu_);
    Current c(*this);
    recycle_words();
    if (free_words_.empty()) grow_words();
    uint32_t index = free_words_.back();
    volatile uint32_t* word = word_at(index);
    *word = 0;
    check(d_.stream_wait_value32(stream, device_word(index), 1, kCuStreamWaitValueGeq), "cuStreamWaitValue32");
    free_words_.pop_back();
    auto* h = new Hold{index, nullptr};
    CUresult r = d_.event_create(&h->passed, kCuEventDisableTiming);
    if (r == kCudaSuccess) r = d_.event_record(h->passed, stream);
    if (r != kCudaSuccess) {
      *word = 1;  // let the stream go
      if (h->passed) d_.event_destroy(h->passed);
      delete h;
      check(r, "cuEventRecord on the caller's stream");
    }
    return h;
  }
  void release_hold(void* hold) override {
    if (!hold) return;
    auto* h = static_cast<Hold*>(hold);
    __atomic_store_n(word_at(h->index), 1u, __ATOMIC_RELEASE);
    std::lock_guard lk(holds_mu_);
    releasing_.push_back(h);
  }

 private:
  // Makes the engine's context current for one call, restoring the caller's.
  class Current {
   public:
    explicit Current(const CudaDevice& dev) : d_(dev.d_) {
      d_.ctx_get_current(&saved_);
      if (saved_ != dev.ctx_) d_.ctx_set_current(dev.ctx_);
      else restore_ = false;
    }
    ~Current() {
      if (restore_) d_.ctx_set_current(saved_);
    }

   private:
    const CudaDriver& d_;
    CUcontext saved_ = nullptr;
    bool restore_ = true;
  };

  void check(CUresult r, const char* what) const {
    if (r != kCudaSuccess) throw std::runtime_error(fmt::format("{} failed: {}", what, cuda_error_text(d_, r)));
  }

  Fence record() {
    CUevent e = nullptr;
    if (!spare_.empty()) {
      e = spare_.back();
      spare_.pop_back();
    } else {
      check(d_.event_create(&e, kCuEventDisableTiming), "cuEventCreate");
    }
    CUresult r = d_.event_record(e, stream_);
    if (r != kCudaSuccess) {
      spare_.push_back(e);
      check(r, "cuEventRecord");
    }
    issued_.emplace_back(++last_, e);
    return last_;
  }

  struct Hold {
    uint32_t index;
    CUevent passed;
  };
  struct Slab {
    uint32_t* host;
    CUdeviceptr device;
  };
  static constexpr uint32_t kWordsPerSlab = 4096;

  uint32_t* word_at(uint32_t i) const { return slabs_[i / kWordsPerSlab].host + i % kWordsPerSlab; }
  CUdeviceptr device_word(uint32_t i) const {
    return slabs_[i / kWordsPerSlab].device + sizeof(uint32_t) * (i % kWordsPerSlab);
  }
  void grow_words() {
    void* host = nullptr;
    check(d_.mem_host_alloc(&host, kWordsPerSlab * sizeof(uint32_t), kCuMemHostAllocPortable | kCuMemHostAllocDeviceMap),
          "cuMemHostAlloc");
    CUdeviceptr dev = 0;
    CUresult r = d_.mem_host_get_device_pointer(&dev, host, 0);
    if (r != kCudaSuccess) {
      d_.mem_free_host(host);
      check(r, "cuMemHostGetDevicePointer");
    }
    const auto base = static_cast<uint32_t>(slabs_.size()) * kWordsPerSlab;
    slabs_.push_back(Slab{static_cast<uint32_t*>(host), dev});
    for (uint32_t i = kWordsPerSlab; i-- > 0;) free_words_.push_back(base + i);
  }
  // Words whose stream has passed its wait are free again (holds_mu_ held).
  void recycle_words() {
    for (auto it = releasing_.begin(); it != releasing_.end();) {
      Hold* h = *it;
      if (d_.event_query(h->passed) == kCudaErrorNotReady) {
        ++it;
        continue;
      }
      d_.event_destroy(h->passed);
      free_words_.push_back(h->index);
      delete h;
      it = releasing_.erase(it);
    }
  }

  const CudaDriver& d_;
  CUcontext ctx_;
  std::mutex holds_mu_;
  std::vector<Slab> slabs_;
  std::vector<uint32_t> free_words_;
  std::vector<Hold*> releasing_;
  CUstream stream_ = nullptr;
  Fence last_ = 0, completed_ = 0;
  std::deque<std::pair<Fence, CUevent>> issued_;
  std::vector<CUevent> spare_;
};

}  // namespace

std::unique_ptr<DeviceOps> make_cuda_device_ops(std::string* why) {
  const CudaDriver* d = cuda_driver(why);
  if (!d) return nullptr;
  if (!reduce::cuda::available(why)) return nullptr;
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  if (d->device_get(&dev, 0) != kCudaSuccess || d->primary_ctx_retain(&ctx, dev) != kCudaSuccess) {
    if (why) *why = "cannot retain the primary context of device 0";
    return nullptr;
  }
  try {
    return std::make_unique<CudaDevice>(*d, ctx);
  } catch (const std::runtime_error& e) {
    if (why) *why = e.what();
    return nullptr;
  }
}

}  // namespace ringlink::detail
