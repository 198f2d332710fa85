// Non-maximum suppression as YOLOv5's non_max_suppression (multi-label,
// class-aware, conf = obj * cls).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace yolo {

struct NmsOptions {
  double conf_thres = 0.001;
  double iou_thres = 0.6;
  int max_det = 300;
  int max_nms = 30000;  // candidates per image entering NMS
  bool multi_label = true;
};

// pred: (bs, N, 5 + nc) decoded boxes (xywh pixels, obj, class probs), any
// device. Returns per image a CPU float tensor (n, 6): x1, y1, x2, y2, conf,
// class, sorted by confidence.
std::vector<torch::Tensor> non_max_suppression(const torch::Tensor& pred, const NmsOptions& opt);

// Greedy NMS over (n, 6) xyxy-conf-class rows sorted by confidence; boxes of
// different classes never suppress each other. Stops after max_det keeps,
// since later rows could not enter the output anyway.
std::vector<int64_t> greedy_nms(const float* rows, int64_t n, float iou_thres, int max_det);

}  // namespace yolo
