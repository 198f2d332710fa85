#include <gtest/gtest.h>

#include "val/metrics.h"
#include "val/nms.h"

using namespace yolo;

namespace {
// One decoded prediction row: xywh, obj, class probabilities.
std::vector<float> row(float x, float y, float w, float h, float obj, std::vector<float> cls) {
  std::vector<float> r = {x, y, w, h, obj};
  r.insert(r.end(), cls.begin(), cls.end());
  return r;
}
}  // namespace

TEST(Nms, SuppressesSameClassKeepsOtherClass) {
  std::vector<float> v;
  for (const auto& r : {row(50, 50, 20, 20, 0.9f, {0.9f, 0.0f}),   // kept (conf .81)
                        row(52, 50, 20, 20, 0.8f, {0.9f, 0.0f}),   // same class, IoU .82 -> suppressed
                        row(51, 50, 20, 20, 0.7f, {0.0f, 0.9f}),   // other class -> kept
                        row(150, 150, 10, 10, 0.5f, {0.5f, 0.0f}), // far away -> kept
                        row(10, 10, 5, 5, 0.0005f, {1.0f, 0.0f})})  // below conf_thres
    v.insert(v.end(), r.begin(), r.end());
  auto pred = torch::tensor(v).view({1, 5, 7});
  auto out = non_max_suppression(pred, NmsOptions{});
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].size(0), 3);
  EXPECT_NEAR(out[0][0][4].item<float>(), 0.81f, 1e-5);
  EXPECT_NEAR(out[0][1][4].item<float>(), 0.63f, 1e-5);
  EXPECT_EQ(out[0][1][5].item<float>(), 1.f);
  EXPECT_NEAR(out[0][2][4].item<float>(), 0.25f, 1e-5);
  // xyxy output
  EXPECT_NEAR(out[0][0][0].item<float>(), 40.f, 1e-5);
  EXPECT_NEAR(out[0][0][3].item<float>(), 60.f, 1e-5);
}

TEST(Nms, MultiLabelAndMaxDet) {
  auto pred = torch::tensor(row(50, 50, 20, 20, 1.0f, {0.6f, 0.5f})).view({1, 1, 7});
  auto out = non_max_suppression(pred, NmsOptions{});
  EXPECT_EQ(out[0].size(0), 2);  // one row per class above threshold
  NmsOptions one;
  one.max_det = 1;
  EXPECT_EQ(non_max_suppression(pred, one)[0].size(0), 1);
}

TEST(Metrics, PerfectPredictionsGiveMapOne) {
  DetectionStats stats;
  for (int img = 0; img < 3; ++img) {
    auto labels = torch::tensor({0.f, 10.f, 10.f, 50.f, 60.f, 1.f, 70.f, 20.f, 90.f, 80.f, 2.f, 5.f, 70.f, 40.f, 99.f})
                      .view({3, 5});
    auto dets = torch::tensor({10.f, 10.f, 50.f, 60.f, 0.9f, 0.f, 70.f, 20.f, 90.f, 80.f, 0.8f, 1.f, 5.f, 70.f, 40.f, 99.f,
                               0.7f, 2.f})
                    .view({3, 6});
    stats.add(dets, labels);
  }
  auto r = stats.compute();
  EXPECT_NEAR(r.map50, 1.0, 1e-9);
  EXPECT_NEAR(r.map, 1.0, 1e-9);
  EXPECT_NEAR(r.mp, 1.0, 1e-6);
  EXPECT_NEAR(r.mr, 1.0, 1e-6);
  EXPECT_EQ(stats.instances(), 9);
}

TEST(Metrics, ComputeApHandComputed) {
  // TP, FP, TP against two labels: recall .5 .5 1, precision 1 .5 2/3.
  // Envelope: precision 1 up to recall .5, 2/3 from there (np.interp reads
  // the value after the step at exactly .5). Sampled at 0, .01, ..., 1 and
  // integrated by trapezoids: .49 + .005 * (1 + 2/3) + .5 * 2/3 = .831667.
  const double expected = 0.49 + 0.005 * (1 + 2.0 / 3) + 0.5 * (2.0 / 3);
  EXPECT_NEAR(compute_ap({0.5, 0.5, 1.0}, {1.0, 0.5, 2.0 / 3}), expected, 1e-9);
  EXPECT_NEAR(compute_ap({1.0}, {1.0}), 1.0, 1e-12);
  // Recall never reaches 1: linear fall to the (1, 0) sentinel, as YOLOv5.
  // Samples 0..50 at 1, then 1 - (x - .5) * 2 down to 0.
  double tail = 0;
  for (int k = 50; k < 100; ++k) tail += 0.01 * ((1 - (k / 100.0 - 0.5) * 2) + (1 - ((k + 1) / 100.0 - 0.5) * 2)) / 2;
  EXPECT_NEAR(compute_ap({0.5}, {1.0}), 0.5 + tail, 1e-9);
}

TEST(Metrics, KnownMixThroughApPerClass) {
  // Class 0: TP(.9) FP(.8) TP(.7) with 2 labels -> AP .831667 at every IoU.
  // Class 1: one label, one FP detection -> AP 0. mAP is the class mean.
  auto tp = torch::zeros({4, kNumIou}, torch::kBool);
  tp[0].fill_(true);
  tp[2].fill_(true);
  auto conf = torch::tensor({0.9f, 0.8f, 0.7f, 0.6f});
  auto pcls = torch::tensor({0.f, 0.f, 0.f, 1.f});
  auto tcls = torch::tensor({0.f, 0.f, 1.f});
  auto r = ap_per_class(tp, conf, pcls, tcls);
  const double ap0 = 0.49 + 0.005 * (1 + 2.0 / 3) + 0.5 * (2.0 / 3);
  ASSERT_EQ(r.classes.size(), 2u);
  EXPECT_EQ(r.nt, (std::vector<int64_t>{2, 1}));  // labels per class
  EXPECT_NEAR(r.ap[0][0], ap0, 1e-9);
  EXPECT_NEAR(r.ap[1][0], 0.0, 1e-12);
  EXPECT_NEAR(r.map50, ap0 / 2, 1e-9);
  EXPECT_NEAR(r.map, ap0 / 2, 1e-9);
}

TEST(Metrics, MatchingIsUniqueAndPerThreshold) {
  // Two detections on one label: only the first (highest confidence) counts.
  auto labels = torch::tensor({0.f, 0.f, 0.f, 10.f, 10.f}).view({1, 5});
  auto dets = torch::tensor({0.f, 0.f, 10.f, 10.f, 0.9f, 0.f, 0.f, 0.f, 10.f, 10.f, 0.8f, 0.f,
                             // IoU 0.72 with the label: a TP at 0.50..0.70 only if unmatched
                             0.f, 0.f, 10.f, 7.2f, 0.7f, 0.f})
                  .view({3, 6});
  auto c = match_detections(dets, labels);
  EXPECT_TRUE(c[0].all().item<bool>());
  EXPECT_FALSE(c[1].any().item<bool>());
  EXPECT_FALSE(c[2].any().item<bool>());
  // Alone, the 0.72-IoU box is a TP at thresholds 0.50 .. 0.70 (5 of 10).
  auto c2 = match_detections(dets.narrow(0, 2, 1), labels);
  EXPECT_EQ(c2.sum().item<int64_t>(), 5);
  // Wrong class never matches.
  auto wrong = dets.narrow(0, 0, 1).clone();
  wrong[0][5] = 1.f;
  EXPECT_FALSE(match_detections(wrong, labels).any().item<bool>());
}

TEST(Metrics, Fitness) { EXPECT_DOUBLE_EQ(fitness(0.5, 0.3), 0.05 + 0.27); }
