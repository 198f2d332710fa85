#include <gtest/gtest.h>

#include "model/yolo.h"

using namespace yolo;

namespace {
YoloModel build(const std::string& name) { return YoloModel(load_model_config(resolve_model_path(name))); }
}  // namespace

// The parameter counts printed by YOLOv5's model summary (nc = 80).
TEST(Model, ParameterCountsMatchYolov5) {
  const std::vector<std::pair<std::string, int64_t>> expected = {{"yolov5n.yaml", 1872157},
                                                                 {"yolov5s.yaml", 7235389},
                                                                 {"yolov5m.yaml", 21190557},
                                                                 {"yolov5l.yaml", 46563709},
                                                                 {"yolov5x.yaml", 86749405}};
  for (const auto& [name, params] : expected) {
    auto m = build(name);
    EXPECT_EQ(m->parameter_count(), params) << name;
    EXPECT_EQ(m->gradient_count(), params) << name;
  }
}

TEST(Model, SummaryLineAndLayerCount) {
  EXPECT_EQ(build("yolov5s.yaml")->summary_line(), "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients");
  EXPECT_EQ(build("yolov5l")->layer_count(), 368);
}

TEST(Model, StridesAnchorsAndOutputs) {
  auto cfg = load_model_config(resolve_model_path("yolov5n.yaml"));
  cfg.nc = 3;
  YoloModel m(cfg);
  auto det = m->detect();
  EXPECT_FLOAT_EQ(det->stride[0].item<float>(), 8.f);
  EXPECT_FLOAT_EQ(det->stride[1].item<float>(), 16.f);
  EXPECT_FLOAT_EQ(det->stride[2].item<float>(), 32.f);
  // Anchors are kept in grid units: 10x13 px at stride 8.
  EXPECT_FLOAT_EQ(det->anchors[0][0][0].item<float>(), 10.f / 8);
  EXPECT_FLOAT_EQ(det->anchors[2][2][1].item<float>(), 326.f / 32);
  auto out = m->forward(torch::rand({2, 3, 128, 96}));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].sizes(), (std::vector<int64_t>{2, 3, 16, 12, 8}));
  EXPECT_EQ(out[2].sizes(), (std::vector<int64_t>{2, 3, 4, 3, 8}));
  m->eval();
  torch::NoGradGuard ng;
  auto dec = det->decode(m->forward(torch::rand({1, 3, 128, 128})));
  EXPECT_EQ(dec.sizes(), (std::vector<int64_t>{1, 3 * (256 + 64 + 16), 8}));
}

TEST(Model, BatchNormSettingsAndDetectBias) {
  auto cfg = load_model_config(resolve_model_path("yolov5n.yaml"));
  YoloModel m(cfg);
  int bns = 0;
  for (auto& mod : m->modules(false)) {
    if (auto* bn = mod->as<torch::nn::BatchNorm2d>()) {
      EXPECT_DOUBLE_EQ(bn->options.eps(), 1e-3);
      EXPECT_DOUBLE_EQ(bn->options.momentum().value(), 0.03);
      ++bns;
    }
  }
  EXPECT_GT(bns, 50);
  // Objectness prior: log(8 / (640 / s)^2) added to a small default bias.
  auto b = m->detect()->m[0]->as<torch::nn::Conv2d>()->bias.view({3, 85});
  const double prior = std::log(8.0 / std::pow(640.0 / 8, 2));
  EXPECT_NEAR(b[0][4].item<double>(), prior, 0.2);
  EXPECT_NEAR(b[0][5].item<double>(), std::log(0.6 / (80 - 0.99999)), 0.2);
}

TEST(Model, MakeDivisible) {
  EXPECT_EQ(make_divisible(64 * 0.25, 8), 16);
  EXPECT_EQ(make_divisible(1024 * 1.25, 8), 1280);
  EXPECT_EQ(make_divisible(13, 8), 16);
}
