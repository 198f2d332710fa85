#include "val/validator.h"

#include <chrono>
#include <cmath>

#include "train/amp.h"
#include "util/box.h"
#include "util/log.h"

namespace yolo {

std::string val_header() {
  return fmt::format("{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}", "Class", "Images", "Instances", "P", "R", "mAP50",
                     "mAP50-95");
}

std::string val_line(const std::string& name, int64_t images, int64_t instances, double p, double r, double map50,
                     double map) {
  return fmt::format("{:>22}{:>11}{:>11}{:>11.3f}{:>11.3f}{:>11.3f}{:>11.3f}", name, images, instances, p, r, map50,
                     map);
}

ValResult validate(YoloModel& model, const Dataset& ds, BatchLoader& loader, const torch::Device& device,
                   const ValOptions& opts, const ComputeLoss* loss) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  DetectionStats stats;
  auto loss_sum = torch::zeros({3}, torch::TensorOptions().device(device));
  int batches = 0;
  const int S = ds.img_size();
  loader.start_epoch(0);
  Batch batch;
  while (loader.next(&batch)) {
    auto imgs = batch.images.to(device, /*non_blocking=*/true).permute({0, 3, 1, 2});
    imgs = (opts.amp ? imgs.to(torch::kHalf) : imgs.to(torch::kFloat)).div_(255.0);
    std::vector<torch::Tensor> raw;
    {
      AutocastGuard autocast(opts.amp);
      raw = model->forward(imgs);
    }
    if (loss) loss_sum += (*loss)(raw, batch.targets).items;
    auto pred = model->detect()->decode(raw);
    auto dets = non_max_suppression(pred, opts.nms);
    auto targets = batch.targets;
    for (size_t i = 0; i < dets.size(); ++i) {
      // Clip to the image area inside the letterbox (YOLOv5 clips in native space).
      const Letterbox& lb = batch.letterboxes[i];
      auto d = dets[i];
      if (d.size(0)) {
        d.select(1, 0).clamp_(lb.padw, lb.padw + lb.w);
        d.select(1, 2).clamp_(lb.padw, lb.padw + lb.w);
        d.select(1, 1).clamp_(lb.padh, lb.padh + lb.h);
        d.select(1, 3).clamp_(lb.padh, lb.padh + lb.h);
      }
      auto t = targets.index({targets.select(1, 0) == static_cast<float>(i)});
      auto labels = torch::cat({t.narrow(1, 1, 1), xywh2xyxy(t.narrow(1, 2, 4) * S)}, 1);
      stats.add(d, labels, static_cast<int64_t>(batch.indices[i]));
    }
    ++batches;
  }
  if (opts.combine_shards) opts.combine_shards(stats, loss_sum, batches);
  ValResult res;
  res.detail = stats.compute();
  res.mp = res.detail.mp, res.mr = res.detail.mr, res.map50 = res.detail.map50, res.map = res.detail.map;
  res.images = stats.images();
  res.instances = stats.instances();
  auto l = (loss_sum / std::max(1, batches)).to(torch::kCPU);
  for (int k = 0; k < 3; ++k) res.loss[k] = l[k].item<double>();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_line(val_header());
  log_line(val_line("all", res.images, res.instances, res.mp, res.mr, res.map50, res.map) +
           fmt::format("   ({:.1f} s)", res.seconds));
  if (opts.verbose) {
    for (size_t c = 0; c < res.detail.classes.size(); ++c) {
      const int cls = res.detail.classes[c];
      double map = 0;
      for (double v : res.detail.ap[c]) map += v / kNumIou;
      const std::string name = cls < static_cast<int>(opts.names.size()) ? opts.names[cls] : std::to_string(cls);
      log_line(val_line(name, res.images, res.detail.nt[c], res.detail.p[c], res.detail.r[c], res.detail.ap[c][0], map));
    }
  }
  if (was_training) model->train();
  return res;
}

}  // namespace yolo
