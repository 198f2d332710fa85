#include "val/nms.h"

#include "util/box.h"

namespace yolo {

std::vector<int64_t> greedy_nms(const float* rows, int64_t n, float iou_thres, int max_det) {
  std::vector<int64_t> keep;
  std::vector<char> removed(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n && static_cast<int>(keep.size()) < max_det; ++i) {
    if (removed[i]) continue;
    keep.push_back(i);
    const float* a = rows + i * 6;
    for (int64_t j = i + 1; j < n; ++j) {
      if (removed[j]) continue;
      const float* b = rows + j * 6;
      if (a[5] == b[5] && iou_xyxy(a, b) > iou_thres) removed[j] = 1;
    }
  }
  return keep;
}

std::vector<torch::Tensor> non_max_suppression(const torch::Tensor& pred_in, const NmsOptions& opt) {
  torch::NoGradGuard no_grad;
  auto pred = pred_in.to(torch::kFloat);
  const int64_t bs = pred.size(0), nc = pred.size(2) - 5;
  // Candidate selection on the prediction's device; only survivors travel.
  auto obj = pred.select(2, 4);
  auto scores = pred.narrow(2, 5, nc) * obj.unsqueeze(-1);  // conf = obj * cls
  torch::Tensor bi, ai, ci, conf;
  if (opt.multi_label) {
    auto mask = (scores > opt.conf_thres) & (obj > opt.conf_thres).unsqueeze(-1);
    auto idx = mask.nonzero();  // (k, 3): image, anchor, class
    bi = idx.select(1, 0), ai = idx.select(1, 1), ci = idx.select(1, 2);
    conf = scores.index({bi, ai, ci});
  } else {
    auto best = scores.max(2);
    auto c = std::get<0>(best);
    auto mask = (c > opt.conf_thres) & (obj > opt.conf_thres);
    auto idx = mask.nonzero();
    bi = idx.select(1, 0), ai = idx.select(1, 1);
    ci = std::get<1>(best).index({bi, ai});
    conf = c.index({bi, ai});
  }
  auto boxes = xywh2xyxy(pred.index({bi, ai}).narrow(1, 0, 4));
  auto rows = torch::cat({boxes, conf.unsqueeze(1), ci.to(torch::kFloat).unsqueeze(1)}, 1).to(torch::kCPU);
  auto img = bi.to(torch::kCPU);

  std::vector<torch::Tensor> out;
  const auto* img_p = img.data_ptr<int64_t>();
  const int64_t total = rows.size(0);
  int64_t start = 0;
  for (int64_t b = 0; b < bs; ++b) {
    int64_t end = start;
    while (end < total && img_p[end] == b) ++end;  // nonzero() is row-major: grouped by image
    auto x = rows.narrow(0, start, end - start);
    start = end;
    if (x.size(0) == 0) {
      out.push_back(torch::zeros({0, 6}));
      continue;
    }
    auto order = x.select(1, 4).argsort(0, /*descending=*/true);
    if (order.size(0) > opt.max_nms) order = order.narrow(0, 0, opt.max_nms);
    x = x.index({order}).contiguous();
    auto keep = greedy_nms(x.data_ptr<float>(), x.size(0), static_cast<float>(opt.iou_thres), opt.max_det);
    out.push_back(x.index({torch::tensor(keep, torch::kLong)}).contiguous());
  }
  return out;
}

}  // namespace yolo
