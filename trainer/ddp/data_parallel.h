// What the trainer does differently as one rank of a data-parallel job, in the order of a
// training step: agree on the loss denominators, reduce gradients in buckets overlapped with
// backward, take the same optimizer decision everywhere, keep BatchNorm statistics
// consistent, gather validation statistics. See docs/trainer.md, "Data-parallel training".
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "ddp/gradient_reducer.h"
#include "ddp/process_group.h"
#include "loss/compute_loss.h"
#include "model/yolo.h"
#include "train/amp.h"
#include "val/metrics.h"

namespace yolo::ddp {

struct DataParallelOptions {
  bool sync_bn = false;
  double bucket_mb = 25;   // 0: one bucket, reduced after backward
  std::string trace_path;  // per-rank trace, <path>.rank<R>: parameter hashes per step (tests)
};

class DataParallel {
 public:
  DataParallel(std::shared_ptr<ProcessGroup> group, YoloModel& model, const DataParallelOptions& opts);
  ~DataParallel();

  ProcessGroup& group() { return *group_; }
  int world() const { return group_->size(); }

  // Rank 0's values in every tensor given (parameters, buffers, EMA, momentum) on every rank.
  void broadcast_from_primary(const std::vector<torch::Tensor>& tensors);

  // Before a micro-batch's forward pass: starts summing the loss denominators over ranks and
  // attaches the gradients to the buckets (armed to communicate when this micro-batch steps).
  void begin_micro_batch(const ComputeLoss& loss, const torch::Tensor& targets, int64_t images, int64_t img_h,
                         int64_t img_w, bool stepping);
  // The global batch's denominators (waits for the sum started above).
  const LossNormalizer& loss_normalizer();
  // Starts summing the (already globally normalised) loss items; call before backward.
  void share_loss_items(const torch::Tensor& items);
  // After backward: the global batch's loss items.
  torch::Tensor loss_items();

  // In the optimizer step, before unscaling: every gradient is the sum over ranks.
  void reduce_gradients();
  // The skip-or-step decision (inf/NaN anywhere skips everywhere); the scaler gets the agreed flag.
  bool agree_step(bool ok, GradScaler* scaler);
  // After the update, before the EMA's: without --sync-bn, BatchNorm statistics become
  // rank 0's (as DDP's broadcast_buffers does).
  void sync_buffers(YoloModel& model);
  // After the EMA update: timing and trace.
  void end_step(YoloModel& model, YoloModel& ema, int64_t step);
  // Buffers made consistent again (trailing micro-batches), and the epoch's communication summary.
  void end_epoch(YoloModel& model, int epoch);

  // For ValOptions::combine_shards.
  void combine_validation(DetectionStats& stats, torch::Tensor& loss_sum, int& batches, const Dataset& ds, int max_det);

  void barrier() { group_->barrier(); }

 private:
  struct StepRecord {
    double compute = 0, exposed = 0, total = 0;
    size_t bytes = 0;
    int buckets = 0, overlapped = 0;
  };
  void trace(const std::string& line);

  std::shared_ptr<ProcessGroup> group_;
  DataParallelOptions opts_;
  std::unique_ptr<GradientReducer> reducer_;
  std::vector<double> strides_;
  torch::Tensor counts_;  // batch size, positives per level (float64, host)
  ringlink::Work counts_work_;
  LossNormalizer norm_;
  torch::Tensor items_;
  ringlink::Work items_work_;
  bool stepping_ = false;
  int64_t micro_batches_ = 0;
  using Clock = std::chrono::steady_clock;
  Clock::time_point cycle_start_{}, micro_start_{};
  bool in_cycle_ = false;
  StepRecord current_;
  std::vector<StepRecord> epoch_steps_;
  std::ofstream trace_;
  uint64_t local_buffers_hash_ = 0;
};

// FNV-1a over the bytes of each tensor in turn: equal hashes mean bitwise-equal values.
uint64_t hash_tensors(const std::vector<torch::Tensor>& tensors);

}  // namespace yolo::ddp
