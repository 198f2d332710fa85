// Mixed precision: an autocast scope and a loss scaler (the equivalent of
// torch.cuda.amp.GradScaler: dynamic scale, inf/NaN check, skipped steps).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace yolo {

// Enables CUDA autocast (fp16) for its lifetime when `enabled`; clears the
// cast cache on exit so updated weights are re-cast next time.
class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_, prev_ = false;
};

class GradScaler {
 public:
  GradScaler(bool enabled, torch::Device device, double init_scale = 65536.0, double growth_factor = 2.0,
             double backoff_factor = 0.5, int64_t growth_interval = 2000);
  bool enabled() const { return enabled_; }
  torch::Tensor scale(const torch::Tensor& loss) const;
  // Divides gradients by the scale and records whether any is inf/NaN.
  void unscale(const std::vector<torch::Tensor>& params);
  // True when the step may be taken (no inf/NaN). The one host sync of a step.
  bool step_ok() const;
  // Replaces the inf/NaN flag with the one all data-parallel ranks agreed on.
  void set_found_inf(bool found);
  // Backs off after an inf/NaN step, grows after growth_interval clean ones.
  void update();
  double scale_value() const;
  // Checkpoint state.
  torch::Tensor state() const;  // (2): scale, growth tracker
  void load_state(const torch::Tensor& s);

 private:
  bool enabled_;
  torch::Device device_;
  double growth_factor_, backoff_factor_;
  int64_t growth_interval_;
  torch::Tensor scale_, growth_tracker_, found_inf_;
};

}  // namespace yolo
