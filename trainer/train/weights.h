// --weights FILE, as train.py's: start training from pretrained weights.
// FILE is a checkpoint of this trainer (last.pt / best.pt) or a state_dict
// saved by PyTorch (torch.save(model.float().state_dict(), f)), which
// trainer/tools/export-ultralytics-weights makes from an ultralytics .pt.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "model/yolo.h"

namespace yolo {

struct PretrainedWeights {
  std::string path;
  bool is_checkpoint = false;
  std::string cfg_name, cfg_yaml;  // the checkpoint's model definition (checkpoints only)
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // by state_dict name
};

// Reads FILE. From a checkpoint the EMA weights are taken: what a finished
// YOLOv5 run keeps as its 'model'. A state_dict is read with LibTorch's
// pickle loader (torch::pickle_load). Errors name the file and what it holds.
PretrainedWeights read_pretrained_weights(const std::string& path);

struct WeightTransfer {
  size_t transferred = 0, total = 0;   // model tensors copied, of all the model has
  std::vector<std::string> skipped;    // present in FILE with another shape, or excluded
};

// intersect_dicts + load_state_dict(strict=False): copies every tensor the
// model has under the same name and shape, leaving the rest as built (Detect
// when nc differs). Names containing any of `exclude` are left too (train.py
// excludes 'anchor' when --cfg is given). The Detect stride buffer is computed,
// not learned, and is neither copied nor counted.
WeightTransfer transfer_weights(YoloModel& model, const PretrainedWeights& weights,
                                const std::vector<std::string>& exclude);

// The model to train: --cfg when given; else the --weights checkpoint's own
// model (as train.py builds ckpt['model'].yaml); else yolov5s.yaml.
ModelConfig training_model_config(const std::string& cfg, const PretrainedWeights* weights);

// transfer_weights as train.py applies it (anchors kept from --cfg when one
// was given), logging "Transferred N/M items from FILE" and what was skipped.
WeightTransfer load_pretrained(YoloModel& model, const PretrainedWeights& weights, bool cfg_given);

}  // namespace yolo
