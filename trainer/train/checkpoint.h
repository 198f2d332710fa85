// Checkpoints (last.pt / best.pt): model, EMA, optimizer momentum, loss
// scaler and the metadata needed to resume or evaluate. Written to a temp
// file and renamed, so a crash never leaves a half-written checkpoint.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/yolo.h"

namespace yolo {

class SGD;
class GradScaler;

struct CheckpointMeta {
  int64_t epoch = -1;  // last completed epoch
  double best_fitness = 0.0;
  int64_t ema_updates = 0;
  int64_t last_opt_step = -1;  // iteration of the last optimizer step (the accumulation schedule)
  std::string cfg_name, cfg_yaml;  // model definition (nc already set)
  std::vector<std::string> names;
  std::string hyp_yaml, opt_yaml;
};

void save_checkpoint(const std::string& path, YoloModel& model, YoloModel* ema, SGD* opt, const GradScaler* scaler,
                     const CheckpointMeta& meta);

// A checkpoint read from disk once; its parts are loaded from memory.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path);
  const std::string& path() const { return path_; }
  const CheckpointMeta& meta() const { return meta_; }
  // Loads weights into a model built from the checkpoint's config. `which` is
  // "model" or "ema" (falls back to "model" when the EMA is absent).
  void load_weights(YoloModel& model, const std::string& which);
  void load_training_state(SGD* opt, GradScaler* scaler);

 private:
  std::string path_;
  torch::serialize::InputArchive ar_;
  CheckpointMeta meta_;
};

CheckpointMeta read_checkpoint_meta(const std::string& path);

// Builds the model a checkpoint describes, with its EMA (or model) weights.
YoloModel load_model_from_checkpoint(const std::string& path, CheckpointMeta* meta);

}  // namespace yolo
