#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "loss/compute_loss.h"
#include "model/yolo.h"

using namespace yolo;

namespace {

// YOLOv5's default anchors in grid units for strides 8, 16, 32.
torch::Tensor default_anchors() {
  auto a = torch::tensor({10.f, 13.f, 16.f, 30.f, 33.f, 23.f, 30.f, 61.f, 62.f, 45.f, 59.f, 119.f, 116.f, 90.f, 156.f,
                          198.f, 373.f, 326.f})
               .view({3, 3, 2});
  return a / torch::tensor({8.f, 16.f, 32.f}).view({3, 1, 1});
}

std::set<std::tuple<int64_t, int64_t, int64_t>> cells(const LevelTargets& t) {  // (anchor, gj, gi)
  std::set<std::tuple<int64_t, int64_t, int64_t>> s;
  for (int64_t k = 0; k < t.b.size(0); ++k) s.insert({t.a[k].item<int64_t>(), t.gj[k].item<int64_t>(), t.gi[k].item<int64_t>()});
  return s;
}

const std::vector<std::pair<int64_t, int64_t>> kGrid256 = {{32, 32}, {16, 16}, {8, 8}};

}  // namespace

// One 25.6 x 38.4 px object centred at (76.8, 153.6) in a 256 px image.
TEST(BuildTargets, HandMadeTargetCellsAndAnchors) {
  ComputeLoss loss(default_anchors(), 3, LossGains{});
  auto targets = torch::tensor({0.f, 1.f, 0.3f, 0.6f, 0.1f, 0.15f}).view({1, 6});
  auto t = loss.build_targets(targets, kGrid256);
  ASSERT_EQ(t.size(), 3u);

  // P3 (32x32): grid xy (9.6, 19.2), wh (3.2, 4.8): every anchor within 4x.
  // x frac .6 -> right neighbour (gi 10); y frac .2 -> upper neighbour (gj 18).
  std::set<std::tuple<int64_t, int64_t, int64_t>> p3;
  for (int64_t a = 0; a < 3; ++a)
    for (auto [gj, gi] : {std::pair{19, 9}, {18, 9}, {19, 10}}) p3.insert({a, gj, gi});
  EXPECT_EQ(cells(t[0]), p3);
  EXPECT_EQ(t[0].b.size(0), 9);
  EXPECT_TRUE((t[0].tcls == 1).all().item<bool>());
  // Box targets: offsets relative to the assigned cell, wh in grid units.
  for (int64_t k = 0; k < 9; ++k) {
    const auto gi = t[0].gi[k].item<int64_t>(), gj = t[0].gj[k].item<int64_t>();
    EXPECT_NEAR(t[0].tbox[k][0].item<float>(), 9.6f - gi, 1e-5);
    EXPECT_NEAR(t[0].tbox[k][1].item<float>(), 19.2f - gj, 1e-5);
    EXPECT_NEAR(t[0].tbox[k][2].item<float>(), 3.2f, 1e-5);
    EXPECT_NEAR(t[0].tbox[k][3].item<float>(), 4.8f, 1e-5);
  }
  // P4 (16x16): grid xy (4.8, 9.6): left-neighbour rule fails, right and lower hold.
  std::set<std::tuple<int64_t, int64_t, int64_t>> p4;
  for (int64_t a = 0; a < 3; ++a)
    for (auto [gj, gi] : {std::pair{9, 4}, {9, 5}, {10, 4}}) p4.insert({a, gj, gi});
  EXPECT_EQ(cells(t[1]), p4);
  // P5: wh (0.8, 1.2) grid units is > 4x smaller than every P5 anchor.
  EXPECT_EQ(t[2].b.size(0), 0);
}

TEST(BuildTargets, AnchorRatioThresholdAndBorder) {
  ComputeLoss loss(default_anchors(), 3, LossGains{});
  // A tall thin box centred near the top-left corner (grid xy 0.3, 0.3 at P3).
  auto targets = torch::tensor({1.f, 0.f, 0.3f / 32, 0.3f / 32, 0.02f, 0.2f}).view({1, 6});
  auto t = loss.build_targets(targets, kGrid256);
  // P3 wh (0.64, 6.4): anchor 0 (1.25, 1.625) ratio 3.94 < 4 -> kept;
  // anchor 1 (2, 3.75): 3.125 -> kept; anchor 2 (4.125, 2.875): 6.4 -> dropped.
  std::set<int64_t> anchors;
  for (int64_t k = 0; k < t[0].a.size(0); ++k) anchors.insert(t[0].a[k].item<int64_t>());
  EXPECT_EQ(anchors, (std::set<int64_t>{0, 1}));
  // Cell (0, 0) only: frac .3 < .5 but xy < 1, so no left/upper neighbour;
  // frac of (32 - xy) is .7, so no right/lower one either.
  EXPECT_EQ(t[0].b.size(0), 2);
  EXPECT_TRUE((t[0].gi == 0).all().item<bool>());
  EXPECT_TRUE((t[0].gj == 0).all().item<bool>());
  EXPECT_TRUE((t[0].b == 1).all().item<bool>());
}

TEST(BuildTargets, NoTargets) {
  ComputeLoss loss(default_anchors(), 3, LossGains{});
  auto t = loss.build_targets(torch::zeros({0, 6}), kGrid256);
  for (const auto& lt : t) EXPECT_EQ(lt.b.size(0), 0);
}

TEST(Loss, GainsRescaled) {
  Hyp h;
  auto g = scaled_gains(h, 3, 3, 320, 0.0);
  EXPECT_DOUBLE_EQ(g.box, 0.05);
  EXPECT_DOUBLE_EQ(g.cls, 0.5 * 3.0 / 80.0);  // floating point, not integer division
  EXPECT_DOUBLE_EQ(g.obj, 0.25);
}

TEST(Loss, FiniteScaledByBatchAndDifferentiable) {
  auto cfg = load_model_config(resolve_model_path("yolov5n.yaml"));
  cfg.nc = 3;
  YoloModel m(cfg);
  ComputeLoss loss(m->detect()->anchors, 3, scaled_gains(Hyp{}, 3, 3, 128, 0.1));
  auto preds = m->forward(torch::rand({2, 3, 128, 128}));
  auto targets = torch::tensor({0.f, 0.f, 0.5f, 0.5f, 0.2f, 0.3f, 1.f, 2.f, 0.3f, 0.7f, 0.1f, 0.1f}).view({2, 6});
  auto r = loss(preds, targets);
  EXPECT_TRUE(torch::isfinite(r.total).item<bool>());
  EXPECT_NEAR(r.total.item<double>(), r.items.sum().item<double>() * 2, 1e-4);
  EXPECT_GT(r.items[0].item<double>(), 0);
  EXPECT_GT(r.items[2].item<double>(), 0);
  r.total.backward();
  int with_grad = 0;
  for (auto& p : m->parameters()) with_grad += p.grad().defined();
  EXPECT_EQ(with_grad, static_cast<int>(m->parameters().size()));
}
