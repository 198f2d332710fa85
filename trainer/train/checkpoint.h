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
  std::string cfg_name, cfg_yaml;  // model definition (nc already set)
  std::vector<std::string> names;
  std::string hyp_yaml, opt_yaml;
};

void save_checkpoint(const std::string& path, YoloModel& model, YoloModel* ema, SGD* opt, const GradScaler* scaler,
                     const CheckpointMeta& meta);

CheckpointMeta read_checkpoint_meta(const std::string& path);

// Loads weights into a model built from the checkpoint's config. `which` is
// "model" or "ema" (falls back to "model" when the EMA is absent).
void load_weights(const std::string& path, YoloModel& model, const std::string& which);
void load_training_state(const std::string& path, SGD* opt, GradScaler* scaler);

// Builds the model a checkpoint describes, with its EMA (or model) weights.
YoloModel load_model_from_checkpoint(const std::string& path, CheckpointMeta* meta);

}  // namespace yolo
