// Box utilities shared by the loss, NMS and metrics.
#pragma once

#include <torch/torch.h>

namespace yolo {

// (..., 4) centre-size to corner boxes.
torch::Tensor xywh2xyxy(const torch::Tensor& x);

// Element-wise IoU of box1[i] with box2[i] (broadcasting over leading dims),
// boxes as (..., 4). With ciou=true returns Complete-IoU as in YOLOv5's
// bbox_iou (eps 1e-7, alpha computed without gradient).
torch::Tensor bbox_iou(const torch::Tensor& box1, const torch::Tensor& box2, bool xywh, bool ciou,
                       double eps = 1e-7);

// Plain-float IoU for CPU loops (xyxy).
inline float iou_xyxy(const float* a, const float* b) {
  const float iw = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  const float ih = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  if (iw <= 0.f || ih <= 0.f) return 0.f;
  const float inter = iw * ih;
  const float ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return inter / (ua + 1e-7f);
}

}  // namespace yolo
