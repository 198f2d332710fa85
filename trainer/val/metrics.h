// Detection metrics as YOLOv5's val.py / utils/metrics.py: per-detection
// true positives at IoU 0.50:0.05:0.95, then per-class precision, recall and
// AP (101-point interpolated), and the fitness used to pick best.pt.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace yolo {

constexpr int kNumIou = 10;  // 0.50, 0.55, ..., 0.95

// detections (n, 6) x1 y1 x2 y2 conf class; labels (m, 5) class x1 y1 x2 y2,
// same pixel space. Returns (n, 10) bool: detection i is a true positive at
// threshold j (unique matches, YOLOv5's process_batch).
torch::Tensor match_detections(const torch::Tensor& detections, const torch::Tensor& labels);

// 101-point interpolated AP of one recall/precision curve (compute_ap).
double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision);

struct ApResult {
  std::vector<int> classes;      // classes present in the labels
  std::vector<int64_t> nt;       // labels per class
  std::vector<double> p, r, f1;  // per class, at the max mean-F1 confidence
  std::vector<std::array<double, kNumIou>> ap;  // per class, per IoU threshold
  double mp = 0, mr = 0, map50 = 0, map = 0;
};

// tp (n, 10) bool, conf (n), pred_cls (n), target_cls (m) — all CPU.
ApResult ap_per_class(const torch::Tensor& tp, const torch::Tensor& conf, const torch::Tensor& pred_cls,
                      const torch::Tensor& target_cls);

// Accumulates per-image statistics over a validation pass.
class DetectionStats {
 public:
  // `key` names the image (its dataset index) when shards are gathered.
  void add(const torch::Tensor& detections, const torch::Tensor& labels, int64_t key = -1);
  ApResult compute() const;
  int64_t images() const { return images_; }
  int64_t instances() const;

  // One image's statistics: tp (n, 10) bool, conf, pcls (n) float, tcls (m) float, all CPU.
  struct Record {
    torch::Tensor tp, conf, pcls, tcls;
    int64_t key = -1;
  };
  Record record(size_t k) const { return {tp_[k], conf_[k], pcls_[k], tcls_[k], keys_[k]}; }
  void add_record(const Record& r);
  void clear();

 private:
  std::vector<torch::Tensor> tp_, conf_, pcls_, tcls_;
  std::vector<int64_t> keys_;
  int64_t images_ = 0;
};

// 0.1 * mAP@0.5 + 0.9 * mAP@0.5:0.95
inline double fitness(double map50, double map) { return 0.1 * map50 + 0.9 * map; }

}  // namespace yolo
