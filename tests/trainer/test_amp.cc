// The mixed-precision pieces on the CPU: the loss scaler's arithmetic and the
// autocast scope (CUDA autocast state toggles even without a GPU).
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "train/amp.h"
#include "train/device.h"
#include "train/optimizer.h"

using namespace yolo;

namespace {
bool cuda_autocast_on() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}
}  // namespace

TEST(Amp, AutocastGuardTogglesAndRestores) {
  EXPECT_FALSE(cuda_autocast_on());
  {
    AutocastGuard on(true);
    EXPECT_TRUE(cuda_autocast_on());
    {
      AutocastGuard off(false);  // disabled guard leaves the state alone
      EXPECT_TRUE(cuda_autocast_on());
    }
  }
  EXPECT_FALSE(cuda_autocast_on());
}

TEST(Amp, GradScalerSkipsNonFiniteAndAdjustsScale) {
  GradScaler scaler(true, torch::Device(torch::kCPU), 1024.0, 2.0, 0.5, 2);
  auto w = torch::ones({3}, torch::requires_grad());
  scaler.scale((w * 2).sum()).backward();
  EXPECT_FLOAT_EQ(w.grad()[0].item<float>(), 2048.f);
  scaler.unscale({w});
  EXPECT_FLOAT_EQ(w.grad()[0].item<float>(), 2.f);
  EXPECT_TRUE(scaler.step_ok());
  scaler.update();
  EXPECT_DOUBLE_EQ(scaler.scale_value(), 1024.0);  // 1 of 2 clean steps
  w.mutable_grad() = torch::tensor({1.f, std::numeric_limits<float>::infinity(), 0.f});
  scaler.unscale({w});
  EXPECT_FALSE(scaler.step_ok());
  scaler.update();
  EXPECT_DOUBLE_EQ(scaler.scale_value(), 512.0);  // backed off
  for (int i = 0; i < 2; ++i) {
    w.mutable_grad() = torch::ones({3});
    scaler.unscale({w});
    EXPECT_TRUE(scaler.step_ok());
    scaler.update();
  }
  EXPECT_DOUBLE_EQ(scaler.scale_value(), 1024.0);  // grew after 2 clean steps
  GradScaler restored(true, torch::Device(torch::kCPU));
  restored.load_state(scaler.state());
  EXPECT_DOUBLE_EQ(restored.scale_value(), 1024.0);
  GradScaler off(false, torch::Device(torch::kCPU));
  auto l = torch::ones({});
  EXPECT_TRUE(torch::equal(off.scale(l), l));
  EXPECT_TRUE(off.step_ok());
}

TEST(Optimizer, NesterovSgdMatchesHandComputation) {
  // One parameter, grad g, lr 0.1, momentum 0.9, decay 0.01.
  auto p = torch::tensor({1.0f}, torch::requires_grad());
  ParamGroup g;
  g.params = {p};
  g.lr = 0.1, g.momentum = 0.9, g.weight_decay = 0.01;
  SGD opt({g}, /*nesterov=*/true);
  p.mutable_grad() = torch::tensor({0.5f});
  opt.step();  // d = .5 + .01 = .51; buf = .51; d += .9 * .51 -> .969; p = 1 - .0969
  EXPECT_NEAR(p.item<float>(), 1.0f - 0.0969f, 1e-6);
  p.mutable_grad() = torch::tensor({0.5f});
  opt.step();  // d = .5 + .01 * .9031 = .509031; buf = .9 * .51 + d = .968031; d += .9 * buf
  const double d = 0.5 + 0.01 * 0.9031, buf = 0.9 * 0.51 + d;
  EXPECT_NEAR(p.item<float>(), 0.9031 - 0.1 * (d + 0.9 * buf), 1e-6);
}

TEST(Optimizer, ParameterGroupsAndClipping) {
  torch::nn::Sequential m(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).bias(false)), torch::nn::BatchNorm2d(4),
                          torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 2, 1)));
  auto groups = yolo_param_groups(*m, 0.01, 0.9, 5e-4);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].params.size(), 2u);  // BN bias, conv bias
  EXPECT_EQ(groups[1].params.size(), 2u);  // conv weights (decay)
  EXPECT_EQ(groups[2].params.size(), 1u);  // BN weight
  EXPECT_DOUBLE_EQ(groups[1].weight_decay, 5e-4);
  EXPECT_DOUBLE_EQ(groups[0].weight_decay, 0.0);
  auto a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({30.f, 0.f});
  b.mutable_grad() = torch::tensor({40.f});
  auto norm = clip_grad_norm({a, b}, 10.0);
  EXPECT_NEAR(norm.item<float>(), 50.f, 1e-4);
  EXPECT_NEAR(a.grad()[0].item<float>(), 6.f, 1e-3);
  EXPECT_NEAR(b.grad()[0].item<float>(), 8.f, 1e-3);
}

// yolov5-val: --half (on unless --no-half) takes effect on CUDA only.
TEST(Amp, ValidationHalfPrecisionOnlyOnCuda) {
  EXPECT_TRUE(half_precision(true, torch::Device(torch::kCUDA, 0)));
  EXPECT_FALSE(half_precision(false, torch::Device(torch::kCUDA, 0)));
  EXPECT_FALSE(half_precision(true, torch::Device(torch::kCPU)));
}
