#include "ddp/sharded_validation.h"

#include <fmt/format.h>

#include <map>
#include <stdexcept>

namespace yolo::ddp {

namespace {

constexpr int64_t kDetectionFloats = 2 + kNumIou;  // conf, class, true positive at each IoU

// `from` < 0: the ranks' figures together are wrong, not one rank's.
[[noreturn]] void bad(const ProcessGroup& g, int from, const std::string& what) {
  const std::string source = from < 0 ? std::string("all ranks") : fmt::format("rank {}", from);
  throw std::runtime_error(fmt::format("rank {}: validation statistics from {}: {}", g.rank(), source, what));
}

}  // namespace

void gather_detection_stats(ProcessGroup& group, DetectionStats& stats, const Dataset& ds, int max_det) {
  torch::NoGradGuard no_grad;
  const auto n_local = static_cast<size_t>(stats.images());
  std::vector<int64_t> meta;
  std::vector<float> data;
  for (size_t k = 0; k < n_local; ++k) {
    const auto r = stats.record(k);
    const int64_t nd = r.conf.size(0), nl = r.tcls.size(0);
    meta.insert(meta.end(), {r.key, nd, nl});
    auto conf = r.conf.to(torch::kFloat).contiguous(), pcls = r.pcls.to(torch::kFloat).contiguous();
    auto tp = r.tp.to(torch::kFloat).contiguous();
    for (int64_t i = 0; i < nd; ++i) {
      data.push_back(conf.data_ptr<float>()[i]);
      data.push_back(pcls.data_ptr<float>()[i]);
      const float* row = tp.data_ptr<float>() + i * kNumIou;
      data.insert(data.end(), row, row + kNumIou);
    }
    auto tcls = r.tcls.to(torch::kFloat).contiguous();
    data.insert(data.end(), tcls.data_ptr<float>(), tcls.data_ptr<float>() + nl);
  }

  auto counts = group.allgather(torch::tensor({static_cast<int64_t>(n_local), static_cast<int64_t>(data.size())}));
  const int world = group.size();
  const auto images_total = static_cast<int64_t>(ds.size());
  const int64_t float_limit = images_total * kDetectionFloats * max_det + static_cast<int64_t>(ds.instances());
  int64_t max_images = 0, max_floats = 0, sum_images = 0;
  for (int r = 0; r < world; ++r) {
    const int64_t ni = counts[r][0].item<int64_t>(), nf = counts[r][1].item<int64_t>();
    if (ni < 0 || ni > images_total) bad(group, r, fmt::format("{} images, the set has {}", ni, images_total));
    if (nf < 0 || nf > float_limit) bad(group, r, fmt::format("{} values, at most {} possible", nf, float_limit));
    max_images = std::max(max_images, ni), max_floats = std::max(max_floats, nf);
    sum_images += ni;
  }
  if (sum_images > images_total) bad(group, -1, fmt::format("{} images in all, the set has {}", sum_images, images_total));

  auto meta_t = torch::zeros({std::max<int64_t>(1, max_images * 3)}, torch::kLong);
  std::copy(meta.begin(), meta.end(), meta_t.data_ptr<int64_t>());
  auto data_t = torch::zeros({std::max<int64_t>(1, max_floats)}, torch::kFloat);
  std::copy(data.begin(), data.end(), data_t.data_ptr<float>());
  auto all_meta = group.allgather(meta_t), all_data = group.allgather(data_t);

  std::map<int64_t, DetectionStats::Record> by_key;
  for (int r = 0; r < world; ++r) {
    const int64_t ni = counts[r][0].item<int64_t>(), nf = counts[r][1].item<int64_t>();
    const int64_t* m = all_meta[r].data_ptr<int64_t>();
    const float* d = all_data[r].data_ptr<float>();
    int64_t cursor = 0;
    for (int64_t i = 0; i < ni; ++i) {
      const int64_t key = m[3 * i], nd = m[3 * i + 1], nl = m[3 * i + 2];
      if (key < 0 || key >= images_total) bad(group, r, fmt::format("image key {} outside [0, {})", key, images_total));
      if (by_key.count(key)) bad(group, r, fmt::format("image {} sent twice", key));
      const auto labels = static_cast<int64_t>(ds.labels(static_cast<size_t>(key)).size());
      if (nd < 0 || nd > max_det) bad(group, r, fmt::format("image {}: {} detections (max {})", key, nd, max_det));
      if (nl < 0 || nl > labels) bad(group, r, fmt::format("image {}: {} labels, the file has {}", key, nl, labels));
      if (cursor + nd * kDetectionFloats + nl > nf) bad(group, r, fmt::format("image {} runs past the {} values sent", key, nf));
      auto rows = torch::from_blob(const_cast<float*>(d + cursor), {nd, kDetectionFloats}, torch::kFloat).clone();
      cursor += nd * kDetectionFloats;
      DetectionStats::Record rec;
      rec.key = key;
      rec.conf = rows.select(1, 0).contiguous();
      rec.pcls = rows.select(1, 1).contiguous();
      rec.tp = rows.narrow(1, 2, kNumIou).gt(0.5).contiguous();
      rec.tcls = torch::from_blob(const_cast<float*>(d + cursor), {nl}, torch::kFloat).clone();
      cursor += nl;
      by_key.emplace(key, std::move(rec));
    }
    if (cursor != nf) bad(group, r, fmt::format("{} values sent, {} described", nf, cursor));
  }
  stats.clear();
  for (auto& [key, rec] : by_key) stats.add_record(rec);
}

}  // namespace yolo::ddp
