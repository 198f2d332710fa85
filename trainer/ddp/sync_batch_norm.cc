#include "ddp/sync_batch_norm.h"

#include <torch/csrc/autograd/custom_function.h>

namespace yolo::ddp {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor per_channel(const torch::Tensor& v) { return v.view({1, -1, 1, 1}); }

class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::Tensor running_mean, torch::Tensor running_var,
                               torch::Tensor num_batches_tracked, double eps, double momentum, ProcessGroup* group) {
    const int64_t c = x.size(1);
    auto xf = x.to(torch::kFloat);  // statistics in fp32 under autocast too
    auto [var, mean] = torch::var_mean(xf, {0, 2, 3}, /*unbiased=*/false);
    double count = static_cast<double>(x.numel() / c);
    if (group && group->size() > 1) {
      // Every rank combines the same gathered rows in the same order: identical results.
      auto local = torch::cat({mean, var, torch::full({1}, count, mean.options())}).to(torch::kDouble);
      auto all = group->allgather(local);  // (ranks, 2c + 1)
      auto n = all.select(1, 2 * c).unsqueeze(1);
      auto m = all.narrow(1, 0, c), v = all.narrow(1, c, c);
      auto total = n.sum();
      auto gmean = (n * m).sum(0) / total;
      auto gvar = (n * (v + (m - gmean).pow(2))).sum(0) / total;
      count = total.item<double>();
      mean = gmean.to(torch::kFloat);
      var = gvar.to(torch::kFloat);
    }
    auto invstd = (var + eps).rsqrt();
    auto y = (xf - per_channel(mean)) * per_channel(invstd) * per_channel(weight) + per_channel(bias);
    {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean, momentum);
      running_var.mul_(1 - momentum).add_(var * (count / std::max(1.0, count - 1)), momentum);
      num_batches_tracked.add_(1);
    }
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["count"] = count;
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return y.to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto &weight = saved[1], mean = saved[2], invstd = saved[3];
    const double count = ctx->saved_data["count"].toDouble();
    auto* group = reinterpret_cast<ProcessGroup*>(ctx->saved_data["group"].toInt());
    auto dy = grad_out[0].to(torch::kFloat);
    auto xhat = (x.to(torch::kFloat) - per_channel(mean)) * per_channel(invstd);
    auto sum_dy = dy.sum({0, 2, 3});
    auto sum_dy_xhat = (dy * xhat).sum({0, 2, 3});
    auto global_dy = sum_dy, global_dy_xhat = sum_dy_xhat;
    if (group && group->size() > 1) {
      const int64_t c = sum_dy.size(0);
      auto both = torch::cat({sum_dy, sum_dy_xhat});
      group->allreduce(both, ringlink::ReduceOp::Sum);
      global_dy = both.narrow(0, 0, c);
      global_dy_xhat = both.narrow(0, c, c);
    }
    auto dx = (dy - per_channel(global_dy / count) - xhat * per_channel(global_dy_xhat / count)) *
              per_channel(invstd * weight);
    return {dx.to(x.scalar_type()), sum_dy_xhat, sum_dy, {}, {}, {}, {}, {}, {}};
  }
};

}  // namespace

BatchNormForward sync_batch_norm(std::shared_ptr<ProcessGroup> group) {
  return [group](torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x) {
    return SyncBatchNormFunction::apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.num_batches_tracked,
                                        bn.options.eps(), bn.options.momentum().value_or(0.1), group.get());
  };
}

}  // namespace yolo::ddp
