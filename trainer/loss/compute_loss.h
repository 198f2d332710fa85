// YOLOv5's detection loss (utils/loss.py ComputeLoss): ratio-based anchor
// matching with neighbouring cells, CIoU box loss, IoU-valued objectness
// targets with per-level balance, BCE class loss with optional smoothing, and
// focal loss when fl_gamma > 0.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "train/hyp.h"

namespace yolo {

struct LossGains {
  double box = 0.05, obj = 1.0, cls = 0.5;  // after rescaling for levels, classes and image size
  double cls_pw = 1.0, obj_pw = 1.0;
  double anchor_t = 4.0;
  double label_smoothing = 0.0;
  double fl_gamma = 0.0;  // > 0: focal loss (alpha 0.25) around both BCEs, as YOLOv5's FocalLoss
};

// YOLOv5's train.py rescaling: box *= 3/nl, cls *= nc/80 * 3/nl,
// obj *= (imgsz/640)^2 * 3/nl.
LossGains scaled_gains(const Hyp& hyp, int nl, int nc, int img_size, double label_smoothing);

// Positive (target, anchor, cell) assignments of one level.
struct LevelTargets {
  torch::Tensor b, a, gj, gi;  // int64 (n)
  torch::Tensor tbox;          // float (n, 4): xy offset within cell (-0.5..1.5), wh in grid units
  torch::Tensor anchors;       // float (n, 2) grid units
  torch::Tensor tcls;          // int64 (n)
};

// The denominators of the loss terms. A single process uses its own batch. Data-parallel
// ranks pass the global batch's (its size, and the positive assignments per level summed over
// ranks): each rank's loss is then its share of the global batch's loss, the shares sum to
// it, and so do their gradients.
struct LossNormalizer {
  double batch_size = 0;
  std::vector<double> positives;  // per level
};

class ComputeLoss {
 public:
  // anchors: (nl, na, 2) in grid units (Detect's buffer).
  ComputeLoss(const torch::Tensor& anchors, int nc, const LossGains& gains);

  // targets (nt, 6) [image, class, x, y, w, h] normalised, on any device.
  // grid_shapes: (ny, nx) per level. Matching runs on the CPU (targets are
  // few), so the training step does not wait on the GPU here.
  std::vector<LevelTargets> build_targets(const torch::Tensor& targets,
                                          const std::vector<std::pair<int64_t, int64_t>>& grid_shapes) const;

  struct Result {
    torch::Tensor total;  // (lbox + lobj + lcls) * batch size, scalar
    torch::Tensor items;  // (3) detached: lbox, lobj, lcls
  };
  // preds: raw (bs, na, ny, nx, 5 + nc) per level. Without `norm`, this batch's own denominators.
  Result operator()(const std::vector<torch::Tensor>& preds, const torch::Tensor& targets,
                    const LossNormalizer* norm = nullptr) const;

  // Positive (target, anchor, cell) assignments per level: the box and class terms' denominators.
  std::vector<int64_t> count_positives(const torch::Tensor& targets,
                                       const std::vector<std::pair<int64_t, int64_t>>& grid_shapes) const;

 private:
  torch::Tensor anchors_cpu_;
  int nl_, na_, nc_;
  LossGains g_;
  std::vector<double> balance_;
};

}  // namespace yolo
