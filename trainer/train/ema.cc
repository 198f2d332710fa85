#include "train/ema.h"

#include <cmath>

namespace yolo {

void copy_state(YoloModel& dst, YoloModel& src) {
  torch::NoGradGuard no_grad;
  auto sp = src->named_parameters(true), dp = dst->named_parameters(true);
  for (const auto& kv : sp) dp[kv.key()].set_data(kv.value().detach().clone());
  auto sb = src->named_buffers(true), db = dst->named_buffers(true);
  for (const auto& kv : sb) db[kv.key()].set_data(kv.value().detach().clone());
}

std::vector<torch::Tensor> ModelEMA::float_state(YoloModel& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m->parameters(true)) out.push_back(p);
  for (auto& b : m->buffers(true))
    if (b.is_floating_point()) out.push_back(b);
  return out;
}

ModelEMA::ModelEMA(YoloModel& model, double decay, double tau, int64_t updates)
    : decay_(decay), tau_(tau), updates_(updates) {
  ema_ = YoloModel(model->cfg);
  ema_->to(model->parameters()[0].device());
  copy_state(ema_, model);
  ema_->eval();
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
  ema_state_ = float_state(ema_);
}

void ModelEMA::update(YoloModel& model) {
  torch::NoGradGuard no_grad;
  ++updates_;
  const double d = decay_ * (1 - std::exp(-static_cast<double>(updates_) / tau_));
  auto src = float_state(model);
  // The anchors and stride buffers are identical in both models, so the
  // average leaves them unchanged; no need to single them out.
  at::_foreach_mul_(ema_state_, d);
  at::_foreach_add_(ema_state_, src, 1 - d);
}

}  // namespace yolo
