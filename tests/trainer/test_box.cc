#include <gtest/gtest.h>

#include <cmath>

#include "util/box.h"

using namespace yolo;

namespace {
torch::Tensor B(std::vector<float> v) { return torch::tensor(v).view({1, 4}); }
double ciou(std::vector<float> a, std::vector<float> b) {
  return bbox_iou(B(a), B(b), /*xywh=*/false, /*ciou=*/true).item<double>();
}
}  // namespace

TEST(Box, XywhToXyxy) {
  auto xyxy = xywh2xyxy(torch::tensor({10.f, 20.f, 4.f, 6.f}).view({1, 4}));
  EXPECT_TRUE(torch::allclose(xyxy, torch::tensor({8.f, 17.f, 12.f, 23.f}).view({1, 4})));
}

TEST(Box, CornerIou) {
  const float p[4] = {0, 0, 2, 2}, q[4] = {1, 0, 3, 2}, far[4] = {10, 10, 11, 11}, edge[4] = {2, 0, 3, 1};
  EXPECT_NEAR(iou_xyxy(p, q), 1.f / 3.f, 1e-6);  // half-overlapping squares
  EXPECT_EQ(iou_xyxy(p, far), 0.f);
  EXPECT_EQ(iou_xyxy(p, edge), 0.f);  // touching edge only
}

TEST(Box, CiouHandComputed) {
  // Identical boxes: IoU 1, no centre distance, same aspect.
  EXPECT_NEAR(ciou({0, 0, 2, 2}, {0, 0, 2, 2}), 1.0, 1e-6);
  // Disjoint squares 1 apart: IoU 0, rho^2 = 9, c^2 = 5^2 + 2^2 = 29.
  EXPECT_NEAR(ciou({0, 0, 2, 2}, {3, 0, 5, 2}), -9.0 / 29.0, 1e-6);
  // Overlapping squares: IoU 1/3, rho^2 = 1, c^2 = 13.
  EXPECT_NEAR(ciou({0, 0, 2, 2}, {1, 0, 3, 2}), 1.0 / 3 - 1.0 / 13, 1e-6);
  // Different aspect: IoU 1/2, rho^2/c^2 = 1/20, v = 4/pi^2 (atan 2 - atan 1)^2.
  const double v = 4 / (M_PI * M_PI) * std::pow(std::atan(2.0) - std::atan(1.0), 2);
  const double alpha = v / (v - 0.5 + 1);
  EXPECT_NEAR(ciou({0, 0, 2, 2}, {0, 0, 4, 2}), 0.5 - 0.05 - v * alpha, 1e-6);
  // xywh form gives the same as xyxy.
  auto x = bbox_iou(torch::tensor({1.f, 1.f, 2.f, 2.f}).view({1, 4}), torch::tensor({2.f, 1.f, 4.f, 2.f}).view({1, 4}),
                    true, true);
  EXPECT_NEAR(x.item<double>(), 0.5 - 0.05 - v * alpha, 1e-6);
}

TEST(Box, CiouGradientFlowsToPrediction) {
  auto leaf = torch::tensor({0.4f, 0.6f, 2.0f, 3.0f}, torch::requires_grad());
  auto t = torch::tensor({0.5f, 0.5f, 2.5f, 2.5f}).view({1, 4});
  auto loss = (1 - bbox_iou(leaf.view({1, 4}), t, true, true)).sum();
  loss.backward();
  auto g = leaf.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<float>(), 0.f);
}
