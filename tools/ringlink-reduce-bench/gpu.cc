#include "ringlink-reduce-bench/gpu.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include <fmt/format.h>

#include "common/cuda_driver.h"
#include "reduce/cuda/reduce.h"
#include "reduce/reduce.h"

namespace ringlink::tools {
namespace {

namespace drv = ringlink::cuda;

struct Failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(const drv::CudaDriver& d, drv::CUresult r, const char* what) {
  if (r != drv::kCudaSuccess) throw Failed(fmt::format("{} failed: {}", what, drv::cuda_error_text(d, r)));
}

drv::CUdeviceptr ptr(void* p) { return reinterpret_cast<drv::CUdeviceptr>(p); }

// Ordinary values of `type` in [-1, 1): sums round but never overflow.
std::vector<std::byte> random_input(DataType type, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> v(-1.0, 1.0);
  std::vector<std::byte> out(count * size_of(type));
  for (size_t i = 0; i < count; ++i) {
    const double x = v(rng);
    std::byte* at = out.data() + i * size_of(type);
    switch (type) {
      case DataType::Float32: {
        const float f = static_cast<float>(x);
        std::memcpy(at, &f, 4);
        break;
      }
      case DataType::Float64: std::memcpy(at, &x, 8); break;
      case DataType::Float16: {
        const uint16_t h = reduce::float_to_half(static_cast<float>(x));
        std::memcpy(at, &h, 2);
        break;
      }
      case DataType::BFloat16: {
        const uint16_t h = reduce::float_to_bfloat16(static_cast<float>(x));
        std::memcpy(at, &h, 2);
        break;
      }
      default: {
        const uint64_t bits = rng();
        std::memcpy(at, &bits, size_of(type));
      }
    }
  }
  return out;
}

// Median over `reps` of the per-call time of `inner` calls of `fn` on `stream`, from events.
template <typename Fn>
double median_seconds(const drv::CudaDriver& d, drv::CUstream stream, int reps, int inner, Fn fn) {
  drv::CUevent start = nullptr, stop = nullptr;
  check(d, d.event_create(&start, drv::kCuEventDefault), "cuEventCreate");
  check(d, d.event_create(&stop, drv::kCuEventDefault), "cuEventCreate");
  for (int i = 0; i < 3; ++i) fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    check(d, d.event_record(start, stream), "cuEventRecord");
    for (int i = 0; i < inner; ++i) fn();
    check(d, d.event_record(stop, stream), "cuEventRecord");
    check(d, d.event_synchronize(stop), "cuEventSynchronize");
    float ms = 0;
    check(d, d.event_elapsed_time(&ms, start, stop), "cuEventElapsedTime");
    t.push_back(ms / 1e3 / inner);
  }
  d.event_destroy(start);
  d.event_destroy(stop);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : p_(drv::device_alloc(bytes)) {}
  ~DeviceBuffer() { drv::device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_;
};

int run(const GpuBenchConfig& config) {
  std::string why;
  if (!reduce::cuda::available(&why)) {
    std::fprintf(stderr, "ringlink-reduce-bench: no GPU reductions here: %s\n", why.c_str());
    return 2;
  }
  const drv::CudaDriver& d = *drv::cuda_driver();
  const size_t max_bytes = *std::max_element(config.sizes.begin(), config.sizes.end());
  DeviceBuffer a(max_bytes), b(max_bytes), c(max_bytes);  // makes device 0's context current
  drv::CUdevice dev = 0;
  char name[256] = {};
  check(d, d.device_get(&dev, 0), "cuDeviceGet");
  check(d, d.device_get_name(name, sizeof name, dev), "cuDeviceGetName");
  drv::CUstream stream = nullptr;
  check(d, d.stream_create(&stream, drv::kCuStreamNonBlocking), "cuStreamCreate");

  std::printf("# GPU 0: %s; kernels built for %s\n", name, reduce::cuda::architectures());
  std::printf("# reduce: c = a %s b (2 reads + 1 write per element); copy: cuMemcpyDtoDAsync (1 read + 1 write)\n",
              std::string(to_string(config.op)).c_str());
  std::printf("# out GB/s = bytes written / time; mem GB/s = bytes read and written / time; median of %d\n",
              config.reps);
  std::printf("%12s %9s %12s %12s %12s %12s %9s %6s\n", "bytes", "type", "copy out", "reduce out", "copy mem",
              "reduce mem", "vs copy", "check");
  int rc = 0;
  for (DataType type : config.types) {
    for (size_t bytes : config.sizes) {
      const size_t count = bytes / size_of(type);
      const size_t used = count * size_of(type);
      const auto ha = random_input(type, count, 1), hb = random_input(type, count, 2);
      drv::copy_to_device(a.get(), ha.data(), used);
      drv::copy_to_device(b.get(), hb.data(), used);
      // Copies from pageable memory may still be in flight on return; the stream below does not
      // wait for the default stream.
      check(d, d.ctx_synchronize(), "cuCtxSynchronize");
      // Each timing covers about 1 GiB of output, at least one call.
      const int inner = static_cast<int>(std::max<size_t>(1, (size_t{1} << 30) / std::max<size_t>(used, 1)));
      const double t_copy = median_seconds(d, stream, config.reps, inner, [&] {
        check(d, d.memcpy_dtod_async(ptr(c.get()), ptr(a.get()), used, stream), "cuMemcpyDtoDAsync");
      });
      const double t_reduce = median_seconds(d, stream, config.reps, inner, [&] {
        reduce::cuda::combine(c.get(), a.get(), b.get(), count, type, config.op, stream);
      });
      check(d, d.stream_synchronize(stream), "cuStreamSynchronize");
      // The result of the last call, bitwise against the host kernels.
      std::vector<std::byte> got(used), want(used);
      drv::copy_to_host(got.data(), c.get(), used);
      reduce::combine(want.data(), ha.data(), hb.data(), count, type, config.op);
      const bool right = got == want;
      if (!right) rc = 1;
      const double gb = static_cast<double>(used) / 1e9;
      std::printf("%12zu %9s %12.1f %12.1f %12.1f %12.1f %8.1f%% %6s\n", used, std::string(to_string(type)).c_str(),
                  gb / t_copy, gb / t_reduce, 2 * gb / t_copy, 3 * gb / t_reduce,
                  100.0 * (3 * gb / t_reduce) / (2 * gb / t_copy), right ? "ok" : "WRONG");
      std::fflush(stdout);
    }
  }
  d.stream_destroy(stream);
  return rc;
}

}  // namespace

int run_gpu_bench(const GpuBenchConfig& config) {
  try {
    return run(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringlink-reduce-bench: %s\n", e.what());
    return 1;
  }
}

}  // namespace ringlink::tools
