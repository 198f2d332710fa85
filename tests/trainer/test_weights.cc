// --weights: PyTorch state_dict files (LibTorch's pickle format) and this
// trainer's checkpoints, copied by name with shape mismatches skipped; and the
// Conv + BN fusion yolov5-val applies.
#include <gtest/gtest.h>
#include <torch/version.h>

#include <cstdlib>
#include <fstream>

#include "scratch_dir.h"
#include "train/amp.h"
#include "train/checkpoint.h"
#include "train/ema.h"
#include "train/optimizer.h"
#include "train/weights.h"

using namespace yolo;

namespace {

YoloModel yolov5n(int nc) {
  auto cfg = load_model_config(resolve_model_path("yolov5n.yaml"));
  cfg.nc = nc;
  return YoloModel(cfg);
}

// What torch.save(dict(model.state_dict()), f) writes: a pickled dict of tensors in a zip archive.
void save_state_dict(YoloModel& m, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& kv : m->named_parameters(true)) dict.insert(kv.key(), kv.value().detach());
  for (const auto& kv : m->named_buffers(true)) dict.insert(kv.key(), kv.value().detach());
  const auto bytes = torch::pickle_save(c10::IValue(dict));
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST(Weights, StateDictTransfersByNameAndSkipsDetectWhenNcDiffers) {
  ScratchDir dir("weights-sd");
  torch::manual_seed(1);
  auto coco = yolov5n(80);
  const std::string file = (dir / "sd.pt").string();
  save_state_dict(coco, file);
  auto w = read_pretrained_weights(file);
  EXPECT_FALSE(w.is_checkpoint);
  EXPECT_GT(w.tensors.size(), 300u);

  torch::manual_seed(2);
  auto shapes = yolov5n(3);
  auto r = transfer_weights(shapes, w, {});
  // Everything but Detect's three output convolutions (weight and bias each).
  EXPECT_EQ(r.total, 349u);  // as YOLOv5's len(model.state_dict()); the stride buffer is not counted
  EXPECT_EQ(r.transferred, r.total - 6);
  ASSERT_EQ(r.skipped.size(), 6u);
  EXPECT_NE(r.skipped[0].find("model.24.m.0.weight (255x64x1x1 in the file, 24x64x1x1 here)"), std::string::npos)
      << r.skipped[0];
  auto sp = shapes->named_parameters(), cp = coco->named_parameters();
  EXPECT_TRUE(torch::equal(sp["model.0.conv.weight"], cp["model.0.conv.weight"]));
  EXPECT_TRUE(torch::equal(sp["model.23.cv3.bn.bias"], cp["model.23.cv3.bn.bias"]));
  EXPECT_FALSE(torch::equal(sp["model.24.m.0.bias"], cp["model.24.m.0.bias"].narrow(0, 0, 24)));
  auto sb = shapes->named_buffers(), cb = coco->named_buffers();
  EXPECT_TRUE(torch::equal(sb["model.2.cv1.bn.running_var"], cb["model.2.cv1.bn.running_var"]));
  // With --cfg given, train.py keeps the anchors the YAML defines.
  EXPECT_EQ(transfer_weights(shapes, w, {"anchor"}).transferred, r.total - 7);
}

TEST(Weights, CheckpointGivesItsModelAndEmaWeights) {
  ScratchDir dir("weights-ckpt");
  torch::manual_seed(3);
  auto m = yolov5n(3);
  ModelEMA ema(m);
  {
    torch::NoGradGuard ng;
    for (auto& p : ema.model()->parameters()) p.add_(0.5);  // tell the EMA from the model
  }
  CheckpointMeta meta;
  meta.cfg_name = m->cfg.name;
  meta.cfg_yaml = m->cfg.yaml_text;
  meta.names = {"a", "b", "c"};
  const std::string file = (dir / "last.pt").string();
  save_checkpoint(file, m, &ema.model(), nullptr, nullptr, meta);
  auto w = read_pretrained_weights(file);
  EXPECT_TRUE(w.is_checkpoint);
  auto cfg = training_model_config("", &w);  // no --cfg: the checkpoint's own model
  EXPECT_EQ(cfg.name, "yolov5n");
  cfg.nc = 3;  // as the trainer sets it from the dataset
  auto fresh = YoloModel(cfg);
  auto r = load_pretrained(fresh, w, false);
  EXPECT_EQ(r.transferred, r.total);
  EXPECT_TRUE(torch::equal(fresh->named_parameters()["model.4.cv2.conv.weight"],
                           ema.model()->named_parameters()["model.4.cv2.conv.weight"]));
  EXPECT_EQ(training_model_config("yolov5s.yaml", &w).name, "yolov5s");  // --cfg wins
}

TEST(Weights, OrderedDictStateDictFromPython) {
  // tests/trainer/data/ordered_state_dict.pt: torch.save(conv.state_dict(), f) of a
  // Conv2d(1, 2, 1) with weight [0.5, -1.5] and bias [0.25, 2.0], by Debian's python3-torch.
  const char* dir = std::getenv("TRAINER_TEST_DATA");
  const std::string file = std::string(dir ? dir : "tests/trainer") + "/data/ordered_state_dict.pt";
  if (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)) {
    auto w = read_pretrained_weights(file);
    ASSERT_EQ(w.tensors.size(), 2u);
    EXPECT_EQ(w.tensors[0].first, "weight");
    EXPECT_FLOAT_EQ(w.tensors[0].second.view(-1)[1].item<float>(), -1.5f);
    EXPECT_FLOAT_EQ(w.tensors[1].second[1].item<float>(), 2.0f);
  } else {
    try {
      read_pretrained_weights(file);
      FAIL() << "expected the OrderedDict explanation";
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("OrderedDict"), std::string::npos) << msg;
      EXPECT_NE(msg.find("torch.save(dict(model.state_dict()), f)"), std::string::npos) << msg;
    }
  }
}

TEST(Weights, NotAnArchiveIsAClearError) {
  ScratchDir dir("weights-bad");
  std::ofstream(dir / "x.pt") << "not a zip";
  try {
    read_pretrained_weights((dir / "x.pt").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a PyTorch zip archive"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_pretrained_weights((dir / "missing.pt").string()), std::runtime_error);
}

TEST(Fuse, ConvBnFoldingKeepsTheOutputs) {
  torch::manual_seed(4);
  auto m = yolov5n(3);
  {
    torch::NoGradGuard ng;  // non-trivial BN statistics
    for (auto& kv : m->named_buffers()) {
      if (kv.key().find("running_mean") != std::string::npos) kv.value().normal_(0, 0.1);
      if (kv.key().find("running_var") != std::string::npos) kv.value().uniform_(0.5, 1.5);
    }
  }
  m->eval();
  torch::NoGradGuard ng;
  auto x = torch::rand({1, 3, 64, 64});
  auto before = m->detect()->decode(m->forward(x));
  const int64_t params = m->parameter_count();
  m->fuse();
  auto after = m->detect()->decode(m->forward(x));
  EXPECT_TRUE(torch::allclose(before, after, 1e-3, 1e-3)) << (before - after).abs().max().item<float>();
  EXPECT_LT(m->parameter_count(), params);  // BN weight and bias fold into a conv bias
  for (auto& kv : m->named_modules())
    EXPECT_EQ(kv.value()->as<torch::nn::BatchNorm2d>(), nullptr) << kv.key();
}
