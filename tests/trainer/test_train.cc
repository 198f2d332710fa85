// Short training runs on a tiny generated shapes set (suite trainer-slow).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "scratch_dir.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace yolo;
namespace fs = std::filesystem;

namespace {

// Made once per process and removed at exit, with the runs folder.
const fs::path& tiny_dataset() {
  static ScratchDir root("tiny-shapes");
  static bool made = false;
  if (!made) {
    make_shapes_dataset(root.path(), "--train 64 --val 8 --img 128 --seed 3");
    made = true;
  }
  return root.path();
}

const fs::path& runs_dir() {
  static ScratchDir runs("runs");
  return runs.path();
}

TrainOptions tiny_options(const std::string& name) {
  TrainOptions o;
  o.cfg = "yolov5n.yaml";
  o.data = (tiny_dataset() / "shapes.yaml").string();
  o.img_size = 128;
  o.batch_size = 8;
  o.workers = 2;
  o.device = "cpu";
  o.project = runs_dir().string();
  o.name = name;
  o.seed = 1;
  return o;
}

}  // namespace

TEST(TrainLoop, LossFallsOverAFewDozenSteps) {
  // 50 optimizer steps on 64 images without augmentation (one batch of 64 per
  // epoch, so no gradient accumulation), starting past YOLOv5's 100-iteration
  // warmup so the steps run at a real learning rate.
  const fs::path hyp = runs_dir() / "loss-hyp.yaml";
  std::ofstream(hyp) << "lr0: 0.2\nmosaic: 0.0\nfliplr: 0.0\nhsv_h: 0.0\nhsv_s: 0.0\nhsv_v: 0.0\n"
                        "translate: 0.0\nscale: 0.0\n";
  auto o = tiny_options("loss");
  o.batch_size = 64;
  o.epochs = 200;
  o.hyp = hyp.string();
  Trainer t(o);
  ASSERT_EQ(t.accumulate(), 1);
  std::vector<double> losses;
  for (int e = 100; e < 150; ++e) {
    auto r = t.train_epoch(e);
    losses.push_back(r.train_loss[0] + r.train_loss[1] + r.train_loss[2]);
  }
  const double first = (losses[0] + losses[1] + losses[2]) / 3;
  const double last = (losses[47] + losses[48] + losses[49]) / 3;
  std::string trace;
  for (double l : losses) trace += std::to_string(l) + " ";
  EXPECT_LT(last, 0.85 * first) << "per-step loss: " << trace;
  EXPECT_EQ(t.optimizer_steps(), 50);
  EXPECT_EQ(t.skipped_steps(), 0);
}

TEST(TrainLoop, ResumeContinuesFromLastCheckpoint) {
  auto o = tiny_options("resume");
  o.epochs = 3;
  o.max_batches = 2;
  std::string last;
  {
    Trainer t(o);
    last = (fs::path(t.options().save_dir) / "weights" / "last.pt").string();
    int calls = 0;
    // Simulate a crash in the middle of the second epoch.
    t.on_gradients_ready = [&](const std::vector<torch::Tensor>&) {
      if (++calls > 2) throw std::runtime_error("simulated crash");
    };
    EXPECT_THROW(t.run(), std::runtime_error);
  }
  auto meta = read_checkpoint_meta(last);
  EXPECT_EQ(meta.epoch, 0);
  EXPECT_GT(meta.ema_updates, 0);
  Trainer resumed(TrainOptions{}, last);
  EXPECT_EQ(resumed.start_epoch(), 1);
  EXPECT_EQ(resumed.options().epochs, 3);
  auto results = resumed.run();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results.back().epoch, 2);
  EXPECT_GT(resumed.ema().updates(), meta.ema_updates);
  // results.csv: header + 3 epochs; best.pt and results.png exist.
  const fs::path dir = fs::path(last).parent_path().parent_path();
  std::ifstream csv(dir / "results.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  EXPECT_EQ(lines, 4);
  EXPECT_TRUE(fs::exists(dir / "results.png"));
  EXPECT_TRUE(fs::exists(dir / "weights" / "best.pt"));
  // A finished run cannot be resumed.
  EXPECT_THROW(Trainer(TrainOptions{}, last), std::runtime_error);
}

namespace {

std::vector<torch::Tensor> state_of(YoloModel& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m->parameters()) out.push_back(p.detach().clone());
  for (const auto& b : m->buffers()) out.push_back(b.detach().clone());
  return out;
}

std::vector<torch::Tensor> params_of(YoloModel& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m->parameters()) out.push_back(p.detach().clone());
  return out;
}

void expect_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += !torch::equal(a[i], b[i]);
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << a.size() << " tensors differ";
}

std::vector<torch::Tensor> momentum_of(Trainer& t) {
  std::vector<torch::Tensor> out;
  for (const auto& g : t.optimizer().momentum_buffers())
    for (const auto& b : g) out.push_back(b.detach().clone());
  return out;
}

}  // namespace

// 2 epochs, resume, 2 more epochs: the restored weights, momentum, EMA and
// loss scaler are the ones saved after epoch 1, and the end is bit for bit the
// end of 4 straight epochs. 8 batches an epoch; warmup's accumulation is 1 up
// to iteration 7, 2 up to 21, then 3, so the optimizer steps at iterations
// 0-7, 9, 11, 13, 15 | 17, 19, 21 | 24, 27, 30 (22-23 and 31 are partial
// accumulations, dropped at the next epoch's start). Epoch 2 must not step at
// iteration 16, only 1 iteration after the last step: the checkpoint remembers
// it (train.py restarts the count there and would step).
TEST(TrainState, ResumeRoundTripEqualsAStraightRun) {
  auto o = tiny_options("straight");
  o.img_size = 64;
  o.epochs = 4;
  o.noval = true;
  const fs::path after_epoch1 = runs_dir() / "after-epoch1.pt";
  std::vector<torch::Tensor> straight, params_saved, ema_saved, momentum_saved;
  torch::Tensor scaler_saved;
  {
    Trainer t(o);
    ASSERT_EQ(t.accumulate(), 8);
    const fs::path last = fs::path(t.options().save_dir) / "weights" / "last.pt";
    int steps = 0;
    // The 13th step (iteration 17, in epoch 2) comes before any update since
    // last.pt was written at the end of epoch 1: keep that file and the state.
    t.on_gradients_ready = [&](const std::vector<torch::Tensor>&) {
      if (++steps != 13) return;
      fs::copy_file(last, after_epoch1);
      params_saved = params_of(t.model());
      ema_saved = state_of(t.ema().model());
      momentum_saved = momentum_of(t);
      scaler_saved = t.scaler().state();
    };
    t.run();
    straight = state_of(t.model());
    EXPECT_EQ(t.optimizer_steps(), 18);
  }
  ASSERT_TRUE(fs::exists(after_epoch1));
  Trainer resumed(TrainOptions{}, after_epoch1.string());
  EXPECT_EQ(resumed.start_epoch(), 2);
  EXPECT_EQ(resumed.options().epochs, 4);
  expect_equal(params_of(resumed.model()), params_saved, "model weights");
  expect_equal(state_of(resumed.ema().model()), ema_saved, "EMA (weights and BN statistics)");
  expect_equal(momentum_of(resumed), momentum_saved, "SGD momentum");
  EXPECT_FALSE(momentum_saved.empty());
  EXPECT_TRUE(torch::equal(resumed.scaler().state(), scaler_saved));
  {
    // BN statistics moved with epoch 2's first forward passes, so those come from the file.
    CheckpointReader ckpt(after_epoch1.string());
    YoloModel saved(resumed.model()->cfg);
    ckpt.load_weights(saved, "model");
    expect_equal(state_of(resumed.model()), state_of(saved), "model weights and buffers vs the checkpoint");
  }
  auto results = resumed.run();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(resumed.optimizer_steps(), 6);  // 17, 19, 21, 24, 27, 30: the schedule went on
  expect_equal(state_of(resumed.model()), straight, "final weights, 2 + resume + 2 vs 4 straight epochs");
}

// A partial accumulation must not reach the next epoch's first step: poisoned
// gradients left from "the previous epoch" are dropped at epoch start.
TEST(TrainState, GradientsAreZeroedAtEpochStart) {
  auto o = tiny_options("zerograd");
  o.epochs = 1;
  o.max_batches = 1;
  Trainer t(o);
  for (auto& p : t.model()->parameters()) p.mutable_grad() = torch::full_like(p, std::nan(""));
  t.train_epoch(0);
  EXPECT_EQ(t.optimizer_steps(), 1);
  EXPECT_EQ(t.skipped_steps(), 0);  // a NaN carried over would have skipped the step
  for (auto& p : t.model()->parameters()) ASSERT_TRUE(torch::isfinite(p).all().item<bool>());
}

// train.py writes best.pt whenever fitness equals the best so far, ties with
// the initial 0 included: a --noval run has one from epoch 0 on.
TEST(TrainState, BestCheckpointFollowsTrainPyOnTies) {
  auto o = tiny_options("best");
  o.epochs = 3;
  o.max_batches = 1;
  o.noval = true;
  Trainer t(o);
  const fs::path best = fs::path(t.options().save_dir) / "weights" / "best.pt";
  int steps = 0;
  t.on_gradients_ready = [&](const std::vector<torch::Tensor>&) {
    if (++steps == 2) throw std::runtime_error("stop in epoch 1");
  };
  EXPECT_THROW(t.run(), std::runtime_error);
  ASSERT_TRUE(fs::exists(best)) << "no best.pt after a --noval epoch 0 (fitness 0, a tie)";
  EXPECT_EQ(read_checkpoint_meta(best.string()).epoch, 0);
}

// --weights with a state_dict of an 80-class model: everything but Detect is
// copied into the 3-class shapes model, and training runs from there.
TEST(TrainState, FineTunesFromAStateDict) {
  auto cfg = load_model_config(resolve_model_path("yolov5n.yaml"));
  torch::manual_seed(5);
  YoloModel coco(cfg);
  const fs::path file = runs_dir() / "coco-state_dict.pt";
  {
    c10::Dict<std::string, torch::Tensor> dict;
    for (const auto& kv : coco->named_parameters(true)) dict.insert(kv.key(), kv.value().detach());
    for (const auto& kv : coco->named_buffers(true)) dict.insert(kv.key(), kv.value().detach());
    const auto bytes = torch::pickle_save(c10::IValue(dict));
    std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto o = tiny_options("finetune");
  o.weights = file.string();
  o.epochs = 1;
  o.max_batches = 2;
  Trainer t(o);
  EXPECT_TRUE(torch::equal(t.model()->named_parameters()["model.6.m.0.cv2.conv.weight"],
                           coco->named_parameters()["model.6.m.0.cv2.conv.weight"]));
  EXPECT_EQ(t.model()->detect()->nc, 3);
  auto r = t.run();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(std::isfinite(r[0].train_loss[0] + r[0].train_loss[1] + r[0].train_loss[2]));
}
