// Short training runs on a tiny generated shapes set (suite trainer-slow).
#include <gtest/gtest.h>

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
    const char* tool = std::getenv("MAKE_SHAPES_DATASET");
    if (!tool) tool = "make-shapes-dataset";
    const std::string cmd =
        std::string(tool) + " --out " + root.path().string() + " --train 64 --val 8 --img 128 --seed 3";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("make-shapes-dataset failed: " + cmd);
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
