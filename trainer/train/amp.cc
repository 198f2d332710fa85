#include "train/amp.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace yolo {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
// LibTorch 2.4+: per-device autocast API.
static bool autocast_cuda_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
static void set_autocast_cuda(bool on) { at::autocast::set_autocast_enabled(at::kCUDA, on); }
#else
static bool autocast_cuda_enabled() { return at::autocast::is_enabled(); }
static void set_autocast_cuda(bool on) { at::autocast::set_enabled(on); }
#endif

AutocastGuard::AutocastGuard(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  prev_ = autocast_cuda_enabled();
  set_autocast_cuda(true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_cuda(prev_);
}

GradScaler::GradScaler(bool enabled, torch::Device device, double init_scale, double growth_factor,
                       double backoff_factor, int64_t growth_interval)
    : enabled_(enabled),
      device_(device),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {
  auto f = torch::TensorOptions().device(device).dtype(torch::kFloat);
  scale_ = torch::full({1}, init_scale, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

void GradScaler::unscale(const std::vector<torch::Tensor>& params) {
  if (!enabled_) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  found_inf_.zero_();
  auto inv_scale = scale_.to(torch::kDouble).reciprocal().to(torch::kFloat);
  if (device_.is_cuda()) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv_scale);
  } else {  // the fused kernel is CUDA-only in older LibTorch
    for (auto& g : grads) {
      found_inf_.add_(g.isfinite().logical_not().any().to(torch::kFloat));
      g.mul_(inv_scale);
    }
    found_inf_.clamp_max_(1.0);
  }
}

bool GradScaler::step_ok() const { return !enabled_ || found_inf_.item<float>() == 0.0f; }

void GradScaler::set_found_inf(bool found) {
  if (enabled_) found_inf_.fill_(found ? 1.0 : 0.0);
}

void GradScaler::update() {
  if (!enabled_) return;
  if (device_.is_cuda()) {
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, growth_factor_, backoff_factor_, growth_interval_);
    return;
  }
  if (found_inf_.item<float>() > 0) {
    scale_.mul_(backoff_factor_);
    growth_tracker_.zero_();
  } else {
    growth_tracker_.add_(1);
    if (growth_tracker_.item<int>() >= growth_interval_) {
      scale_.mul_(growth_factor_);
      growth_tracker_.zero_();
    }
  }
}

double GradScaler::scale_value() const { return scale_.item<double>(); }

torch::Tensor GradScaler::state() const {
  return torch::stack({scale_.to(torch::kCPU, torch::kDouble).squeeze(),
                       growth_tracker_.to(torch::kCPU, torch::kDouble).squeeze()});
}

void GradScaler::load_state(const torch::Tensor& s) {
  scale_.fill_(s[0].item<double>());
  growth_tracker_.fill_(static_cast<int>(s[1].item<double>()));
}

}  // namespace yolo
