#include "val/metrics.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "util/box.h"

namespace yolo {

namespace {

// numpy.interp for increasing (possibly repeated) xp.
double interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left, double right) {
  const size_t n = xp.size();
  if (n == 0) return left;
  if (x < xp.front()) return left;
  if (x > xp.back()) return right;
  if (x == xp.back()) return fp.back();
  const size_t j = static_cast<size_t>(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
  const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
  return fp[j] + slope * (x - xp[j]);
}

std::vector<double> smooth(const std::vector<double>& y, double f) {
  const int nf = static_cast<int>(std::nearbyint(y.size() * f * 2)) / 2 + 1;
  std::vector<double> yp(nf / 2, y.front());
  yp.insert(yp.end(), y.begin(), y.end());
  yp.insert(yp.end(), nf / 2, y.back());
  std::vector<double> out(yp.size() - nf + 1);
  for (size_t i = 0; i < out.size(); ++i) {
    double s = 0;
    for (int k = 0; k < nf; ++k) s += yp[i + k];
    out[i] = s / nf;
  }
  return out;
}

}  // namespace

torch::Tensor match_detections(const torch::Tensor& detections_in, const torch::Tensor& labels_in) {
  auto det = detections_in.to(torch::kCPU, torch::kFloat).contiguous();
  auto lab = labels_in.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t n = det.size(0), m = lab.size(0);
  auto correct = torch::zeros({n, kNumIou}, torch::kBool);
  if (n == 0 || m == 0) return correct;
  const float* d = det.data_ptr<float>();
  const float* l = lab.data_ptr<float>();
  std::vector<float> iou(static_cast<size_t>(m * n));
  for (int64_t a = 0; a < m; ++a)
    for (int64_t b = 0; b < n; ++b) iou[a * n + b] = iou_xyxy(l + a * 5 + 1, d + b * 6);
  auto* out = correct.data_ptr<bool>();
  auto thresholds = torch::linspace(0.5, 0.95, kNumIou);  // float32 as YOLOv5's iouv
  for (int t = 0; t < kNumIou; ++t) {
    const float thr = thresholds[t].item<float>();
    struct Match {
      int64_t label, det;
      float iou;
    };
    std::vector<Match> matches;
    for (int64_t a = 0; a < m; ++a)
      for (int64_t b = 0; b < n; ++b)
        if (iou[a * n + b] >= thr && l[a * 5] == d[b * 6 + 5]) matches.push_back({a, b, iou[a * n + b]});
    if (matches.empty()) continue;
    if (matches.size() > 1) {
      // Highest IoU first; then one match per detection (ordered by detection
      // index, as np.unique leaves it), then the first of those per label.
      std::stable_sort(matches.begin(), matches.end(), [](const Match& x, const Match& y) { return x.iou > y.iou; });
      std::map<int64_t, Match> per_det;
      for (const auto& mt : matches) per_det.emplace(mt.det, mt);
      std::map<int64_t, Match> per_label;
      for (const auto& [det_i, mt] : per_det) per_label.emplace(mt.label, mt);
      matches.clear();
      for (const auto& [lab_i, mt] : per_label) matches.push_back(mt);
    }
    for (const auto& mt : matches) out[mt.det * kNumIou + t] = true;
  }
  return correct;
}

double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision) {
  std::vector<double> mrec = {0.0}, mpre = {1.0};
  mrec.insert(mrec.end(), recall.begin(), recall.end());
  mrec.push_back(1.0);
  mpre.insert(mpre.end(), precision.begin(), precision.end());
  mpre.push_back(0.0);
  for (size_t i = mpre.size() - 1; i > 0; --i) mpre[i - 1] = std::max(mpre[i - 1], mpre[i]);  // envelope
  // Trapezoidal integration of the envelope sampled at 101 recall points.
  // One deliberate difference from YOLOv5: at recall 1.0, when the detections
  // do reach recall 1, the envelope is read where they first reach it, not at
  // the appended (1, 0) sentinel that np.interp lands on. That sentinel caps
  // YOLOv5's AP at 0.995 for perfect detections; every other sample agrees.
  const int N = 101;
  double ap = 0, prev_x = 0, prev_y = 0;
  const size_t first_full = static_cast<size_t>(std::lower_bound(mrec.begin(), mrec.end(), 1.0) - mrec.begin());
  for (int k = 0; k < N; ++k) {
    const double x = static_cast<double>(k) / (N - 1);
    const double y = k == N - 1 ? mpre[first_full] : interp(x, mrec, mpre, mpre.front(), mpre.back());
    if (k > 0) ap += (x - prev_x) * (y + prev_y) / 2;
    prev_x = x, prev_y = y;
  }
  return ap;
}

ApResult ap_per_class(const torch::Tensor& tp_in, const torch::Tensor& conf_in, const torch::Tensor& pred_cls_in,
                      const torch::Tensor& target_cls_in) {
  const double eps = 1e-16;
  auto tp_t = tp_in.to(torch::kBool).contiguous();
  auto conf_t = conf_in.to(torch::kDouble).contiguous();
  auto pcls_t = pred_cls_in.to(torch::kLong).contiguous();
  auto tcls_t = target_cls_in.to(torch::kLong).contiguous();
  const int64_t n = conf_t.size(0);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  const double* conf = conf_t.data_ptr<double>();
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return conf[a] > conf[b]; });
  const bool* tp = tp_t.data_ptr<bool>();
  const int64_t* pcls = pcls_t.data_ptr<int64_t>();

  std::map<int, int> nt;  // class -> label count
  for (int64_t i = 0; i < tcls_t.size(0); ++i) nt[static_cast<int>(tcls_t.data_ptr<int64_t>()[i])]++;

  ApResult res;
  const int npx = 1000;
  std::vector<std::vector<double>> P, R;
  for (const auto& [c, n_l] : nt) {
    res.classes.push_back(c);
    res.nt.push_back(n_l);
    std::array<double, kNumIou> ap{};
    std::vector<double> p_curve(npx, 0.0), r_curve(npx, 0.0);
    std::vector<int64_t> idx;
    for (int64_t k : order)
      if (pcls[k] == c) idx.push_back(k);
    if (!idx.empty() && n_l > 0) {
      const size_t np_ = idx.size();
      std::vector<double> neg_conf(np_);
      for (size_t k = 0; k < np_; ++k) neg_conf[k] = -conf[idx[k]];
      std::vector<std::vector<double>> recall(kNumIou, std::vector<double>(np_)),
          precision(kNumIou, std::vector<double>(np_));
      for (int t = 0; t < kNumIou; ++t) {
        double tpc = 0, fpc = 0;
        for (size_t k = 0; k < np_; ++k) {
          const bool hit = tp[idx[k] * kNumIou + t];
          tpc += hit;
          fpc += !hit;
          recall[t][k] = tpc / (n_l + eps);
          precision[t][k] = tpc / (tpc + fpc);
        }
      }
      for (int k = 0; k < npx; ++k) {
        const double x = -static_cast<double>(k) / (npx - 1);
        r_curve[k] = interp(x, neg_conf, recall[0], 0.0, recall[0].back());
        p_curve[k] = interp(x, neg_conf, precision[0], 1.0, precision[0].back());
      }
      for (int t = 0; t < kNumIou; ++t) ap[t] = compute_ap(recall[t], precision[t]);
    }
    res.ap.push_back(ap);
    P.push_back(p_curve);
    R.push_back(r_curve);
  }
  const size_t ncls = res.classes.size();
  if (ncls == 0) return res;
  std::vector<double> f1_mean(npx, 0.0);
  for (size_t c = 0; c < ncls; ++c)
    for (int k = 0; k < npx; ++k) f1_mean[k] += 2 * P[c][k] * R[c][k] / (P[c][k] + R[c][k] + eps) / ncls;
  const auto sm = smooth(f1_mean, 0.1);
  const size_t best = static_cast<size_t>(std::max_element(sm.begin(), sm.end()) - sm.begin());
  for (size_t c = 0; c < ncls; ++c) {
    res.p.push_back(P[c][best]);
    res.r.push_back(R[c][best]);
    res.f1.push_back(2 * P[c][best] * R[c][best] / (P[c][best] + R[c][best] + eps));
    res.mp += P[c][best] / ncls;
    res.mr += R[c][best] / ncls;
    res.map50 += res.ap[c][0] / ncls;
    double mean = 0;
    for (double v : res.ap[c]) mean += v / kNumIou;
    res.map += mean / ncls;
  }
  return res;
}

void DetectionStats::add(const torch::Tensor& detections, const torch::Tensor& labels, int64_t key) {
  add_record({match_detections(detections, labels).to(torch::kCPU), detections.select(1, 4).to(torch::kCPU, torch::kFloat),
              detections.select(1, 5).to(torch::kCPU, torch::kFloat), labels.select(1, 0).to(torch::kCPU, torch::kFloat),
              key});
}

void DetectionStats::add_record(const Record& r) {
  ++images_;
  tp_.push_back(r.tp);
  conf_.push_back(r.conf);
  pcls_.push_back(r.pcls);
  tcls_.push_back(r.tcls);
  keys_.push_back(r.key);
}

void DetectionStats::clear() {
  tp_.clear(), conf_.clear(), pcls_.clear(), tcls_.clear(), keys_.clear();
  images_ = 0;
}

int64_t DetectionStats::instances() const {
  int64_t n = 0;
  for (const auto& t : tcls_) n += t.size(0);
  return n;
}

ApResult DetectionStats::compute() const {
  if (images_ == 0) return {};
  return ap_per_class(torch::cat(tp_), torch::cat(conf_), torch::cat(pcls_), torch::cat(tcls_));
}

}  // namespace yolo
