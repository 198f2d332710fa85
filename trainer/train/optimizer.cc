#include "train/optimizer.h"

namespace yolo {

std::vector<ParamGroup> yolo_param_groups(torch::nn::Module& model, double lr, double momentum, double decay) {
  std::vector<ParamGroup> g(3);
  for (const auto& item : model.named_modules()) {
    const bool is_bn = item.value()->as<torch::nn::BatchNorm2d>() != nullptr;
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      const std::string full = item.key().empty() ? p.key() : item.key() + "." + p.key();
      const int gi = p.key() == "bias" ? 0 : (p.key() == "weight" && is_bn) ? 2 : 1;
      g[gi].params.push_back(p.value());
      g[gi].names.push_back(full);
    }
  }
  for (int i = 0; i < 3; ++i) {
    g[i].lr = g[i].initial_lr = lr;
    g[i].momentum = momentum;
    g[i].weight_decay = i == 1 ? decay : 0.0;
  }
  return g;
}

std::vector<torch::Tensor> SGD::all_params() const {
  std::vector<torch::Tensor> all;
  for (const auto& g : groups_) all.insert(all.end(), g.params.begin(), g.params.end());
  return all;
}

void SGD::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) {
      auto& grad = p.mutable_grad();
      if (grad.defined()) grad = torch::Tensor();  // set_to_none, as PyTorch's default
    }
}

void SGD::step() {
  torch::NoGradGuard no_grad;
  if (buffers_.size() != groups_.size()) buffers_.resize(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    std::vector<torch::Tensor> params, grads;
    for (auto& p : g.params) {
      if (!p.grad().defined()) continue;
      params.push_back(p);
      grads.push_back(p.grad());
    }
    if (params.empty()) continue;
    // d_p = grad + wd * p
    std::vector<torch::Tensor> d_p =
        g.weight_decay != 0 ? at::_foreach_add(grads, params, g.weight_decay) : grads;
    auto& buf = buffers_[gi];
    if (g.momentum != 0) {
      if (buf.size() != params.size()) {  // first step: buf = d_p
        buf.clear();
        for (auto& d : d_p) buf.push_back(d.detach().clone());
      } else {  // buf = momentum * buf + d_p
        at::_foreach_mul_(buf, g.momentum);
        at::_foreach_add_(buf, d_p);
      }
      if (nesterov_) {
        if (g.weight_decay == 0) d_p = at::_foreach_add(grads, buf, g.momentum);  // keep .grad intact
        else at::_foreach_add_(d_p, buf, g.momentum);
      } else {
        d_p = buf;
      }
    }
    at::_foreach_add_(params, d_p, -g.lr);
  }
}

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({});
  auto norms = at::_foreach_norm(grads, 2);
  auto total = torch::stack(norms).norm(2);
  auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.mul_(coef);
  return total;
}

}  // namespace yolo
