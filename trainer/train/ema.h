// ModelEMA: exponential moving average of every floating-point parameter and
// buffer (BN statistics included), decay 0.9999 * (1 - exp(-updates / 2000)).
#pragma once

#include <torch/torch.h>

#include "model/yolo.h"

namespace yolo {

class ModelEMA {
 public:
  ModelEMA(YoloModel& model, double decay = 0.9999, double tau = 2000.0, int64_t updates = 0);
  void update(YoloModel& model);
  YoloModel& model() { return ema_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t u) { updates_ = u; }

 private:
  static std::vector<torch::Tensor> float_state(YoloModel& m);
  YoloModel ema_{nullptr};
  std::vector<torch::Tensor> ema_state_;
  double decay_, tau_;
  int64_t updates_;
};

// Copies every parameter and buffer of src into dst (same architecture).
void copy_state(YoloModel& dst, YoloModel& src);

}  // namespace yolo
