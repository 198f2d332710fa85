// Single-process YOLOv5 training loop (train.py): data, model, loss,
// SGD with warmup and a linear or cosine schedule, EMA, AMP, per-epoch
// validation, results.csv / results.png and checkpoints.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "loss/compute_loss.h"
#include "model/yolo.h"
#include "train/amp.h"
#include "train/ema.h"
#include "train/hyp.h"
#include "train/optimizer.h"
#include "val/validator.h"

namespace yolo {

namespace ddp {
class ProcessGroup;
class DataParallel;
}  // namespace ddp

struct TrainOptions {
  std::string cfg;      // empty: the --weights checkpoint's model, else yolov5s.yaml
  std::string weights;  // pretrained weights: a checkpoint or a PyTorch state_dict (train/weights.h)
  std::string data;
  std::string hyp;  // empty: built-in hyp.scratch-low
  int epochs = 100;
  int batch_size = 16;
  int img_size = 640;
  std::string device;  // empty: cuda:0 if available, else cpu
  int workers = 8;
  std::string project = "runs/train";
  std::string name = "exp";
  bool exist_ok = false;
  uint64_t seed = 0;
  bool cos_lr = false;
  double label_smoothing = 0.0;
  bool noval = false;
  bool nosave = false;
  bool amp = true;       // mixed precision on CUDA (ignored on CPU)
  std::string cache = "none";  // ram, disk or none (train.py's --cache)
  int max_batches = 0;   // >0: stop each epoch after this many batches (smoke tests)
  std::string save_dir;  // set when the run starts (or from the checkpoint on resume)
  // Data parallelism (see docs/trainer.md): batch_size is the global batch.
  bool sync_bn = false;      // synchronised BatchNorm
  double bucket_mb = 25;     // gradient bucket size; 0: one allreduce after backward
  std::string ddp_trace;     // per-rank trace files (tests)
  int world_size = 1;        // ranks of the run (recorded for --resume)
};

std::string options_to_yaml(const TrainOptions& o);
TrainOptions options_from_yaml(const std::string& text);

// Per-epoch summary, also what results.csv holds.
struct EpochResult {
  int epoch = 0;
  std::array<double, 3> train_loss{0, 0, 0};
  ValResult val;
  std::array<double, 3> lr{0, 0, 0};
  double train_seconds = 0;
  int64_t train_images = 0;
  double fitness = 0;
};

class Trainer {
 public:
  // resume_from: a last.pt to continue (options then come from it). group: the ranks of a
  // data-parallel job (null: a single process).
  explicit Trainer(TrainOptions opts, const std::string& resume_from = "",
                   std::shared_ptr<ddp::ProcessGroup> group = nullptr);
  ~Trainer();

  // Trains from start_epoch() to the last epoch; returns every epoch's result.
  std::vector<EpochResult> run();
  // One epoch of training (no validation); returns mean losses.
  EpochResult train_epoch(int epoch);

  // Called once per optimizer step with every parameter whose gradient is
  // complete (summed over the accumulated micro-batches), before unscaling,
  // clipping and the update. A data-parallel trainer all-reduces here.
  std::function<void(const std::vector<torch::Tensor>& params)> on_gradients_ready;

  YoloModel& model() { return model_; }
  ModelEMA& ema() { return *ema_; }
  SGD& optimizer() { return *optimizer_; }
  GradScaler& scaler() { return *scaler_; }
  const TrainOptions& options() const { return opts_; }
  int start_epoch() const { return start_epoch_; }
  int64_t optimizer_steps() const { return optimizer_steps_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  const torch::Device& device() const { return device_; }
  int accumulate() const { return accumulate_; }

 private:
  void step();  // the one place gradients become a parameter update
  double lf(double epoch) const;
  void set_epoch_lr(int epoch);
  double warmup_iterations() const;
  void warmup(int64_t ni, int epoch);
  void write_results(const EpochResult& r);
  void save(const std::string& path, int epoch);
  void check_anchors();

  TrainOptions opts_;
  Hyp hyp_;
  DatasetConfig data_;
  torch::Device device_{torch::kCPU};
  bool amp_ = false;
  YoloModel model_{nullptr};
  std::unique_ptr<ModelEMA> ema_;
  std::unique_ptr<SGD> optimizer_;
  std::unique_ptr<GradScaler> scaler_;
  std::unique_ptr<ComputeLoss> loss_;
  std::unique_ptr<Dataset> train_ds_, val_ds_;
  std::unique_ptr<BatchLoader> train_loader_, val_loader_;
  std::vector<torch::Tensor> params_;
  int nbs_ = 64;
  int accumulate_ = 1;
  int64_t last_opt_step_ = -1;
  int64_t optimizer_steps_ = 0, skipped_steps_ = 0;
  int start_epoch_ = 0;
  double best_fitness_ = 0.0;
  std::string resume_from_;
  std::shared_ptr<ddp::ProcessGroup> group_;
  std::unique_ptr<ddp::DataParallel> dp_;  // set when group_ is
};

// runs/train/exp, exp2, exp3, ... (or exp itself with exist_ok).
std::string increment_path(const std::string& base, bool exist_ok);

}  // namespace yolo
