#include "ddp/data_parallel.h"

#include <unistd.h>

#include <algorithm>
#include <numeric>

#include "ddp/sharded_validation.h"
#include "ddp/sync_batch_norm.h"
#include "util/log.h"

namespace yolo::ddp {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

std::vector<torch::Tensor> buffers_of(YoloModel& m) { return m->buffers(true); }
std::vector<torch::Tensor> parameters_of(YoloModel& m) { return m->parameters(true); }

}  // namespace

uint64_t hash_tensors(const std::vector<torch::Tensor>& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group, YoloModel& model, const DataParallelOptions& opts)
    : group_(std::move(group)), opts_(opts) {
  if (opts_.bucket_mb < 0) throw std::runtime_error("--bucket-mb must be >= 0");
  if (opts_.sync_bn) model->set_batch_norm_forward(sync_batch_norm(group_));
  reducer_ = std::make_unique<GradientReducer>(*group_, parameters_of(model),
                                               static_cast<size_t>(opts_.bucket_mb * 1024 * 1024));
  auto s = model->detect()->stride.to(torch::kCPU, torch::kDouble).contiguous();
  strides_.assign(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  counts_ = torch::zeros({1 + static_cast<int64_t>(strides_.size())}, torch::kDouble);
  std::string sizes;
  for (size_t b = 0; b < reducer_->num_buckets(); ++b)
    sizes += fmt::format("{}{:.2f}", b ? " + " : "", reducer_->bucket_size_bytes(b) / 1048576.0);
  log_info("DDP: {}; BatchNorm {}; gradients ({:.2f} MB) in {} bucket{} of {} MB{}", group_->describe(),
           opts_.sync_bn ? "synchronised (--sync-bn)" : "statistics from rank 0", reducer_->total_bytes() / 1048576.0,
           reducer_->num_buckets(), reducer_->num_buckets() == 1 ? "" : "s", sizes,
           opts_.bucket_mb > 0 ? ", each allreduced as soon as backward has filled it" : ", allreduced after backward");
  if (!opts_.trace_path.empty()) {
    const std::string path = fmt::format("{}.rank{}", opts_.trace_path, group_->rank());
    trace_.open(path);
    if (!trace_) throw std::runtime_error("cannot write the trace file " + path);
    trace(fmt::format("start rank {} world {} pid {}", group_->rank(), group_->size(), ::getpid()));
  }
}

DataParallel::~DataParallel() {
  for (auto* w : {&counts_work_, &items_work_}) {
    try {
      w->wait();
    } catch (...) {
      // Reported by the wait that failed first.
    }
  }
}

void DataParallel::trace(const std::string& line) {
  if (!trace_.is_open()) return;
  trace_ << line << '\n';
  trace_.flush();
}

void DataParallel::broadcast_from_primary(const std::vector<torch::Tensor>& tensors) { group_->broadcast(tensors, 0); }

void DataParallel::begin_micro_batch(const ComputeLoss& loss, const torch::Tensor& targets, int64_t images, int64_t img_h,
                                     int64_t img_w, bool stepping) {
  micro_start_ = Clock::now();
  if (!in_cycle_) {
    cycle_start_ = micro_start_;
    in_cycle_ = true;
    current_ = StepRecord{};
  }
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (double s : strides_)
    shapes.emplace_back(static_cast<int64_t>(img_h / s), static_cast<int64_t>(img_w / s));
  const auto positives = loss.count_positives(targets, shapes);
  auto* c = counts_.data_ptr<double>();
  c[0] = static_cast<double>(images);
  for (size_t l = 0; l < positives.size(); ++l) c[1 + l] = static_cast<double>(positives[l]);
  counts_work_ = group_->iallreduce(counts_, ringlink::ReduceOp::Sum);
  stepping_ = stepping;
  reducer_->prepare(stepping);
}

const LossNormalizer& DataParallel::loss_normalizer() {
  counts_work_.wait();
  const auto* c = counts_.data_ptr<double>();
  norm_.batch_size = c[0];
  norm_.positives.assign(c + 1, c + counts_.numel());
  return norm_;
}

void DataParallel::share_loss_items(const torch::Tensor& items) {
  items_ = items.detach().to(torch::kFloat).contiguous().clone();
  items_work_ = group_->iallreduce(items_, ringlink::ReduceOp::Sum);
}

torch::Tensor DataParallel::loss_items() {
  items_work_.wait();
  current_.compute += std::chrono::duration<double>(Clock::now() - micro_start_).count();
  trace(fmt::format("micro {} stepping {} grad_bytes_started {}", micro_batches_++, stepping_ ? 1 : 0,
                    reducer_->bytes_started()));
  return items_;
}

void DataParallel::reduce_gradients() {
  const auto s = reducer_->finish();
  current_.exposed = s.wait_seconds;
  current_.bytes = s.bytes;
  current_.buckets = s.buckets;
  current_.overlapped = s.started_during_backward;
}

bool DataParallel::agree_step(bool ok, GradScaler* scaler) {
  auto flag = torch::tensor({ok ? 0 : 1}, torch::kInt);
  group_->allreduce(flag, ringlink::ReduceOp::Max);
  const bool agreed = flag.item<int>() == 0;
  if (agreed != ok) log_warn("rank {}: another rank found non-finite gradients; this step is skipped on every rank",
                             group_->rank());
  if (scaler) scaler->set_found_inf(!agreed);
  return agreed;
}

void DataParallel::sync_buffers(YoloModel& model) {
  auto buffers = buffers_of(model);
  if (trace_.is_open()) local_buffers_hash_ = hash_tensors(buffers);
  if (!opts_.sync_bn) group_->broadcast(buffers, 0);
}

void DataParallel::end_step(YoloModel& model, YoloModel& ema, int64_t step) {
  current_.total = std::chrono::duration<double>(Clock::now() - cycle_start_).count();
  epoch_steps_.push_back(current_);
  in_cycle_ = false;
  if (trace_.is_open()) {
    auto ema_state = parameters_of(ema);
    for (auto& b : buffers_of(ema)) ema_state.push_back(b);
    trace(fmt::format("step {} params {:016x} buffers {:016x} local_buffers {:016x} ema {:016x} grad_bytes {}", step,
                      hash_tensors(parameters_of(model)), hash_tensors(buffers_of(model)), local_buffers_hash_,
                      hash_tensors(ema_state), current_.bytes));
  }
}

void DataParallel::end_epoch(YoloModel& model, int epoch) {
  if (!opts_.sync_bn) group_->broadcast(buffers_of(model), 0);
  if (epoch_steps_.empty()) return;
  std::vector<double> total, compute, exposed, frac;
  size_t bytes = 0;
  int buckets = 0, overlapped = 0;
  for (const auto& s : epoch_steps_) {
    total.push_back(s.total * 1e3);
    compute.push_back(s.compute * 1e3);
    exposed.push_back(s.exposed * 1e3);
    frac.push_back(s.total > 0 ? 100 * s.exposed / s.total : 0);
    bytes += s.bytes;
    buckets += s.buckets;
    overlapped += s.overlapped;
  }
  const double n = static_cast<double>(epoch_steps_.size());
  log_info("DDP epoch {}: {} optimizer steps; per step, median (mean): {:.1f} ({:.1f}) ms in all, forward+backward "
           "{:.1f} ({:.1f}) ms, waiting for gradients after backward {:.2f} ({:.2f}) ms = {:.2f} % ({:.2f} %) of the step; "
           "{:.2f} MB allreduced in {:.1f} buckets, {:.1f} of them started during backward",
           epoch, epoch_steps_.size(), median(total), mean(total), median(compute), mean(compute), median(exposed),
           mean(exposed), median(frac), mean(frac), bytes / n / 1048576.0, buckets / n, overlapped / n);
  epoch_steps_.clear();
}

void DataParallel::combine_validation(DetectionStats& stats, torch::Tensor& loss_sum, int& batches, const Dataset& ds,
                                      int max_det) {
  gather_detection_stats(*group_, stats, ds, max_det);
  auto sums = loss_sum.to(torch::kFloat).contiguous().clone();
  group_->allreduce(sums, ringlink::ReduceOp::Sum);
  loss_sum = sums.to(loss_sum.device());
  auto nb = torch::tensor({static_cast<int64_t>(batches)}, torch::kLong);
  group_->allreduce(nb, ringlink::ReduceOp::Sum);
  batches = static_cast<int>(nb.item<int64_t>());
}

}  // namespace yolo::ddp
