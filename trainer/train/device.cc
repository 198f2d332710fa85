#include "train/device.h"

#include <ATen/Context.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "trainer_config.h"

#if defined(YOLO_HAVE_CUDA_STATS)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace yolo {

torch::Device select_device(const std::string& spec) {
  std::string s = spec;
  if (s.empty()) return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (s == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (s == "cuda") {
    index = 0;
  } else if (s.rfind("cuda:", 0) == 0) {
    index = std::stoi(s.substr(5));
  } else if (!s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
    index = std::stoi(s);
  } else {
    throw std::runtime_error("invalid --device '" + spec + "' (cpu, cuda, cuda:N or N)");
  }
  if (!torch::cuda::is_available())
    throw std::runtime_error("--device " + spec + " requested but CUDA is not available (CPU-only LibTorch or no GPU)");
  if (index >= static_cast<int>(torch::cuda::device_count()))
    throw std::runtime_error("--device " + spec + ": only " + std::to_string(torch::cuda::device_count()) +
                             " CUDA device(s)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void cuda_setup_fast_kernels() {
  const char* env = std::getenv("YOLO_CUDNN_BENCHMARK");
  const bool benchmark = !(env && std::string(env) == "0");
  if (torch::cuda::is_available()) at::globalContext().setBenchmarkCuDNN(benchmark);
}

void cuda_empty_cache(const torch::Device& d) {
#if defined(YOLO_HAVE_CUDA_STATS)
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)d;
#endif
}

void cuda_synchronize(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

GpuMemory cuda_memory(const torch::Device& d) {
  GpuMemory m;
#if defined(YOLO_HAVE_CUDA_STATS)
  if (d.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    constexpr size_t kAggregate = 0;  // StatType::AGGREGATE
    m.peak_allocated_gb = stats.allocated_bytes[kAggregate].peak / 1e9;
    m.peak_reserved_gb = stats.reserved_bytes[kAggregate].peak / 1e9;
    m.reserved_gb = stats.reserved_bytes[kAggregate].current / 1e9;
  }
#else
  (void)d;
#endif
  return m;
}

void cuda_reset_peak(const torch::Device& d) {
#if defined(YOLO_HAVE_CUDA_STATS)
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
#else
  (void)d;
#endif
}

bool half_precision(bool half_requested, const torch::Device& d) { return half_requested && d.is_cuda(); }

std::string device_name(const torch::Device& d) {
  if (!d.is_cuda()) return "CPU";
  return "CUDA:" + std::to_string(d.index());
}

}  // namespace yolo
