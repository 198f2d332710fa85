// SGD with Nesterov momentum over YOLOv5's three parameter groups:
// 0 biases (no decay), 1 weights (decay), 2 BatchNorm weights (no decay).
// Written here rather than torch::optim::SGD so the update can run as a few
// multi-tensor (_foreach_) kernels and lr/momentum can change per iteration.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace yolo {

struct ParamGroup {
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  double lr = 0.01, initial_lr = 0.01, momentum = 0.937, weight_decay = 0.0;
};

class SGD {
 public:
  SGD(std::vector<ParamGroup> groups, bool nesterov = true) : groups_(std::move(groups)), nesterov_(nesterov) {}
  void step();
  void zero_grad();
  std::vector<ParamGroup>& groups() { return groups_; }
  std::vector<torch::Tensor> all_params() const;
  // Momentum buffers (empty until the first step) for checkpoints.
  std::vector<std::vector<torch::Tensor>>& momentum_buffers() { return buffers_; }

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<torch::Tensor>> buffers_;
  bool nesterov_;
};

// YOLOv5's smart_optimizer grouping of a model's parameters.
std::vector<ParamGroup> yolo_param_groups(torch::nn::Module& model, double lr, double momentum, double decay);

// clip_grad_norm_ (L2, no host sync): scales gradients so their global norm
// is at most max_norm; returns the norm as a device scalar.
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace yolo
