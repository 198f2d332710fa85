#include "util/box.h"

#include <cmath>

namespace yolo {

torch::Tensor xywh2xyxy(const torch::Tensor& x) {
  auto xy = x.narrow(-1, 0, 2);
  auto half = x.narrow(-1, 2, 2) / 2;
  return torch::cat({xy - half, xy + half}, -1);
}

torch::Tensor bbox_iou(const torch::Tensor& box1, const torch::Tensor& box2, bool xywh, bool ciou,
                       double eps) {
  torch::Tensor b1x1, b1y1, b1x2, b1y2, b2x1, b2y1, b2x2, b2y2, w1, h1, w2, h2;
  auto cols1 = box1.unbind(-1);
  auto cols2 = box2.unbind(-1);
  if (xywh) {
    w1 = cols1[2];
    h1 = cols1[3];
    w2 = cols2[2];
    h2 = cols2[3];
    b1x1 = cols1[0] - w1 / 2;
    b1x2 = cols1[0] + w1 / 2;
    b1y1 = cols1[1] - h1 / 2;
    b1y2 = cols1[1] + h1 / 2;
    b2x1 = cols2[0] - w2 / 2;
    b2x2 = cols2[0] + w2 / 2;
    b2y1 = cols2[1] - h2 / 2;
    b2y2 = cols2[1] + h2 / 2;
  } else {
    b1x1 = cols1[0];
    b1y1 = cols1[1];
    b1x2 = cols1[2];
    b1y2 = cols1[3];
    b2x1 = cols2[0];
    b2y1 = cols2[1];
    b2x2 = cols2[2];
    b2y2 = cols2[3];
    w1 = b1x2 - b1x1;
    h1 = (b1y2 - b1y1).clamp_min(eps);
    w2 = b2x2 - b2x1;
    h2 = (b2y2 - b2y1).clamp_min(eps);
  }
  auto inter = (torch::min(b1x2, b2x2) - torch::max(b1x1, b2x1)).clamp_min(0) *
               (torch::min(b1y2, b2y2) - torch::max(b1y1, b2y1)).clamp_min(0);
  auto uni = w1 * h1 + w2 * h2 - inter + eps;
  auto iou = inter / uni;
  if (!ciou) return iou;
  auto cw = torch::max(b1x2, b2x2) - torch::min(b1x1, b2x1);  // enclosing box
  auto ch = torch::max(b1y2, b2y2) - torch::min(b1y1, b2y1);
  auto c2 = cw.pow(2) + ch.pow(2) + eps;
  auto rho2 = ((b2x1 + b2x2 - b1x1 - b1x2).pow(2) + (b2y1 + b2y2 - b1y1 - b1y2).pow(2)) / 4;
  auto v = (4 / (M_PI * M_PI)) * (torch::atan(w2 / h2) - torch::atan(w1 / h1)).pow(2);
  torch::Tensor alpha;
  {
    torch::NoGradGuard no_grad;
    alpha = v / (v - iou + (1 + eps));
  }
  return iou - (rho2 / c2 + v * alpha);
}

}  // namespace yolo
