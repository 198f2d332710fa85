// Device selection and the CUDA-only knobs the trainer uses; everything
// CUDA-specific lives behind these functions so a CPU-only LibTorch builds.
#pragma once

#include <torch/torch.h>

#include <string>

namespace yolo {

// "" (cuda:0 when available, else cpu), "cpu", "cuda", "cuda:N" or "N".
torch::Device select_device(const std::string& spec);

struct GpuMemory {
  double peak_allocated_gb = 0, peak_reserved_gb = 0, reserved_gb = 0;
};

// cudnn.benchmark on (YOLO_CUDNN_BENCHMARK=0 in the environment turns it off).
void cuda_setup_fast_kernels();
// Returns cached, unused allocator blocks (e.g. cudnn autotuning workspaces).
void cuda_empty_cache(const torch::Device& d);
void cuda_synchronize(const torch::Device& d);
GpuMemory cuda_memory(const torch::Device& d);
void cuda_reset_peak(const torch::Device& d);
std::string device_name(const torch::Device& d);
// yolov5-val's precision: --half (on unless --no-half) takes effect on CUDA
// only, as val.py's `half &= device.type != 'cpu'`.
bool half_precision(bool half_requested, const torch::Device& d);

}  // namespace yolo
