// One validation pass: forward (eval mode, autocast on CUDA), losses on the
// raw outputs, NMS, matching, and P / R / mAP@0.5 / mAP@0.5:0.95.
#pragma once

#include <torch/torch.h>

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "loss/compute_loss.h"
#include "model/yolo.h"
#include "val/metrics.h"
#include "val/nms.h"

namespace yolo {

struct ValResult {
  double mp = 0, mr = 0, map50 = 0, map = 0;
  std::array<double, 3> loss{0, 0, 0};  // box, obj, cls (mean over batches)
  int64_t images = 0, instances = 0;
  ApResult detail;
  double seconds = 0;
};

struct ValOptions {
  NmsOptions nms;
  bool amp = false;
  bool verbose = false;  // per-class lines
  std::vector<std::string> names;
  // Data parallelism: each rank validates its shard, then this merges every rank's
  // per-image statistics (in dataset order) and loss sums, so all ranks compute the same result.
  std::function<void(DetectionStats& stats, torch::Tensor& loss_sum, int& batches)> combine_shards;
};

// loader must be built without augmentation over `ds`; loss may be null.
ValResult validate(YoloModel& model, const Dataset& ds, BatchLoader& loader, const torch::Device& device,
                   const ValOptions& opts, const ComputeLoss* loss);

std::string val_header();
std::string val_line(const std::string& name, int64_t images, int64_t instances, double p, double r, double map50,
                     double map);

}  // namespace yolo
