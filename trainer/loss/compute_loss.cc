#include "loss/compute_loss.h"

#include <stdexcept>
#include <string>

#include "util/box.h"

namespace yolo {

LossGains scaled_gains(const Hyp& hyp, int nl, int nc, int img_size, double label_smoothing) {
  LossGains g;
  const double lv = 3.0 / nl;
  g.box = hyp.box * lv;
  g.cls = hyp.cls * (static_cast<double>(nc) / 80.0) * lv;
  g.obj = hyp.obj * std::pow(img_size / 640.0, 2) * lv;
  g.cls_pw = hyp.cls_pw;
  g.obj_pw = hyp.obj_pw;
  g.anchor_t = hyp.anchor_t;
  g.label_smoothing = label_smoothing;
  g.fl_gamma = hyp.fl_gamma;
  return g;
}

ComputeLoss::ComputeLoss(const torch::Tensor& anchors, int nc, const LossGains& gains)
    : anchors_cpu_(anchors.detach().to(torch::kCPU, torch::kFloat).clone()),
      nl_(static_cast<int>(anchors.size(0))),
      na_(static_cast<int>(anchors.size(1))),
      nc_(nc),
      g_(gains) {
  balance_ = nl_ == 3 ? std::vector<double>{4.0, 1.0, 0.4} : std::vector<double>{4.0, 1.0, 0.25, 0.06, 0.02};
  balance_.resize(nl_, 0.02);
}

std::vector<LevelTargets> ComputeLoss::build_targets(
    const torch::Tensor& targets_in, const std::vector<std::pair<int64_t, int64_t>>& grid_shapes) const {
  torch::NoGradGuard no_grad;
  const auto targets0 = targets_in.to(torch::kCPU, torch::kFloat);
  const int64_t nt = targets0.size(0);
  // (na, nt, 7): each target repeated per anchor with the anchor index appended.
  auto ai = torch::arange(na_, torch::kFloat).view({na_, 1}).repeat({1, nt});
  auto targets = torch::cat({targets0.repeat({na_, 1, 1}), ai.unsqueeze(-1)}, 2);
  const double g = 0.5;  // neighbour-cell bias
  auto off = torch::tensor({0.f, 0.f, 1.f, 0.f, 0.f, 1.f, -1.f, 0.f, 0.f, -1.f}).view({5, 2}) * g;

  std::vector<LevelTargets> out;
  for (int i = 0; i < nl_; ++i) {
    auto anchors = anchors_cpu_[i];
    const auto [ny, nx] = grid_shapes[i];
    auto gain = torch::ones({7});
    gain[2] = nx, gain[3] = ny, gain[4] = nx, gain[5] = ny;
    auto t = targets * gain;
    torch::Tensor offsets;
    if (nt) {
      // Keep (target, anchor) pairs whose wh ratio is within anchor_t either way.
      auto r = t.narrow(-1, 4, 2) / anchors.unsqueeze(1);
      auto j = std::get<0>(torch::max(r, 1 / r).max(2)) < g_.anchor_t;
      t = t.index({j});
      auto gxy = t.narrow(1, 2, 2);
      auto gxi = torch::tensor({static_cast<float>(nx), static_cast<float>(ny)}) - gxy;
      auto jk = ((gxy.fmod(1) < g) & (gxy > 1)).t();
      auto lm = ((gxi.fmod(1) < g) & (gxi > 1)).t();
      auto sel = torch::stack({torch::ones_like(jk[0]), jk[0], jk[1], lm[0], lm[1]});
      t = t.repeat({5, 1, 1}).index({sel});
      offsets = (torch::zeros_like(gxy).unsqueeze(0) + off.unsqueeze(1)).index({sel});
    } else {
      t = targets[0];
      offsets = torch::zeros({t.size(0), 2});
    }
    auto bc = t.narrow(1, 0, 2), gxy = t.narrow(1, 2, 2), gwh = t.narrow(1, 4, 2);
    auto a = t.select(1, 6).to(torch::kLong);
    auto gij = (gxy - offsets).to(torch::kLong);
    LevelTargets lt;
    lt.b = bc.select(1, 0).to(torch::kLong);
    lt.tcls = bc.select(1, 1).to(torch::kLong);
    lt.gi = gij.select(1, 0).clamp(0, nx - 1);
    lt.gj = gij.select(1, 1).clamp(0, ny - 1);
    lt.a = a;
    lt.tbox = torch::cat({gxy - gij, gwh}, 1);
    lt.anchors = anchors.index({a});
    out.push_back(std::move(lt));
  }
  return out;
}

std::vector<int64_t> ComputeLoss::count_positives(const torch::Tensor& targets,
                                                  const std::vector<std::pair<int64_t, int64_t>>& grid_shapes) const {
  std::vector<int64_t> n;
  for (const auto& lt : build_targets(targets, grid_shapes)) n.push_back(lt.b.size(0));
  return n;
}

ComputeLoss::Result ComputeLoss::operator()(const std::vector<torch::Tensor>& preds_in, const torch::Tensor& targets,
                                            const LossNormalizer* norm) const {
  const auto device = preds_in[0].device();
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (const auto& p : preds_in) shapes.emplace_back(p.size(2), p.size(3));
  auto level_targets = build_targets(targets, shapes);

  auto fopt = torch::TensorOptions().device(device).dtype(torch::kFloat);
  auto lbox = torch::zeros({1}, fopt), lobj = torch::zeros({1}, fopt), lcls = torch::zeros({1}, fopt);
  const double cp = 1.0 - 0.5 * g_.label_smoothing, cn = 0.5 * g_.label_smoothing;
  // BCEWithLogits with pos_weight; a weight of 1 (the default) is left out so
  // no host value has to be copied to the device, which would wait for it.
  // With fl_gamma > 0 each element is weighted first, as FocalLoss does:
  // alpha_t * (1 - p_t)^gamma with alpha 0.25 for positives. Sums, divided by
  // the normaliser's counts below (the means of a single process).
  const double gamma = g_.fl_gamma, alpha = 0.25;
  auto bce_sum = [&](const torch::Tensor& x, const torch::Tensor& y, double pos_weight) {
    namespace F = torch::nn::functional;
    auto o = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum);
    if (pos_weight != 1.0) o = o.pos_weight(torch::full({1}, pos_weight, fopt));
    if (gamma <= 0) return F::binary_cross_entropy_with_logits(x, y, o);
    auto loss = F::binary_cross_entropy_with_logits(x, y, o.reduction(torch::kNone));
    auto p = x.sigmoid();
    auto p_t = y * p + (1 - y) * (1 - p);
    auto alpha_factor = y * alpha + (1 - y) * (1 - alpha);
    return (loss * alpha_factor * (1.0 - p_t).pow(gamma)).sum();
  };
  const double bs = norm ? norm->batch_size : static_cast<double>(preds_in[0].size(0));
  if (norm && static_cast<int>(norm->positives.size()) != nl_)
    throw std::invalid_argument("ComputeLoss: the normaliser has " + std::to_string(norm->positives.size()) +
                                " levels, the model " + std::to_string(nl_));

  for (int i = 0; i < nl_; ++i) {
    // Loss in fp32 even when the forward pass ran in half precision.
    auto pi = preds_in[i].to(torch::kFloat);
    const auto& lt = level_targets[i];
    auto tobj = torch::zeros({pi.size(0), pi.size(1), pi.size(2), pi.size(3)}, fopt);
    const int64_t n = lt.b.size(0);
    const double positives = norm ? norm->positives[i] : static_cast<double>(n);
    if (n) {
      const bool nb = device.is_cuda();
      auto b = lt.b.to(device, nb), a = lt.a.to(device, nb), gj = lt.gj.to(device, nb), gi = lt.gi.to(device, nb);
      auto ps = pi.index({b, a, gj, gi});  // (n, 5 + nc)
      auto pxy = ps.narrow(1, 0, 2).sigmoid() * 2 - 0.5;
      auto pwh = (ps.narrow(1, 2, 2).sigmoid() * 2).pow(2) * lt.anchors.to(device, nb);
      auto pbox = torch::cat({pxy, pwh}, 1);
      auto iou = bbox_iou(pbox, lt.tbox.to(device, nb), /*xywh=*/true, /*ciou=*/true);
      lbox += (1.0 - iou).sum() / positives;
      tobj.index_put_({b, a, gj, gi}, iou.detach().clamp_min(0));
      if (nc_ > 1) {
        auto pcls = ps.narrow(1, 5, nc_);
        auto t = torch::full_like(pcls, cn);
        t.index_put_({torch::arange(n, torch::TensorOptions().device(device).dtype(torch::kLong)), lt.tcls.to(device, nb)},
                     cp);
        lcls += bce_sum(pcls, t, g_.cls_pw) / (positives * nc_);
      }
    }
    lobj += bce_sum(pi.select(-1, 4), tobj, g_.obj_pw) / (bs * static_cast<double>(pi.size(1) * pi.size(2) * pi.size(3))) *
            balance_[i];
  }
  lbox *= g_.box;
  lobj *= g_.obj;
  lcls *= g_.cls;
  Result r;
  r.total = ((lbox + lobj + lcls) * bs).squeeze();
  r.items = torch::cat({lbox, lobj, lcls}).detach();
  return r;
}

}  // namespace yolo
