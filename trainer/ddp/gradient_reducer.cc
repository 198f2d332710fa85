#include "ddp/gradient_reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace yolo::ddp {

namespace {

constexpr size_t kFirstBucketCap = size_t{1} << 20;  // as DDP: the first bucket starts early

size_t bytes_of(const torch::Tensor& t) { return static_cast<size_t>(t.numel()) * t.element_size(); }

}  // namespace

GradientReducer::GradientReducer(ProcessGroup& group, const std::vector<torch::Tensor>& params, size_t bucket_bytes)
    : group_(group), params_(params), overlap_(bucket_bytes > 0) {
  const size_t n = params_.size();
  bucket_of_.assign(n, 0);
  seen_.assign(n, 0);
  views_.resize(n);
  // Reverse registration order; a bucket holds one dtype on one device.
  std::vector<std::vector<size_t>> groups;
  size_t filled = 0;
  for (size_t k = n; k-- > 0;) {
    const auto& p = params_[k];
    if (!p.requires_grad()) throw std::invalid_argument("GradientReducer: a parameter does not require a gradient");
    bool fresh = groups.empty();
    if (!fresh) {
      const auto& q = params_[groups.back().front()];
      const size_t cap = groups.size() == 1 ? std::min(kFirstBucketCap, bucket_bytes) : bucket_bytes;
      fresh = q.scalar_type() != p.scalar_type() || q.device() != p.device() ||
              (overlap_ && filled + bytes_of(p) > cap);
    }
    if (fresh) {
      groups.emplace_back();
      filled = 0;
    }
    groups.back().push_back(k);
    filled += bytes_of(p);
  }
  for (auto& members : groups) {
    Bucket b;
    int64_t numel = 0;
    for (size_t k : members) numel += params_[k].numel();
    b.flat = torch::zeros({numel}, params_[members.front()].options().requires_grad(false));
    int64_t offset = 0;
    for (size_t k : members) {
      const auto& p = params_[k];
      auto slice = b.flat.narrow(0, offset, p.numel());
      // Same strides as the parameter (channels_last included), as AccumulateGrad expects.
      views_[k] = p.is_non_overlapping_and_dense() ? slice.as_strided(p.sizes(), p.strides()) : slice.view(p.sizes());
      bucket_of_[k] = buckets_.size();
      offset += p.numel();
    }
    b.params = members;
    buckets_.push_back(std::move(b));
  }
  for (size_t k = 0; k < n; ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[k]);
    if (!acc) throw std::invalid_argument("GradientReducer: a parameter is not a leaf");
    auto key = acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, k](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient(k);
          return outputs;
        }));
    hooks_.push_back({std::move(acc), key});
  }
}

GradientReducer::~GradientReducer() {
  for (auto& h : hooks_) h.accumulator->del_post_hook(h.key);
  // The engine may still write into the buckets: wait (each wait has the engine's deadline).
  for (auto& b : buckets_) {
    try {
      b.work.wait();
    } catch (...) {
      // The failure was (or will be) reported by whoever waited first.
    }
  }
}

size_t GradientReducer::bucket_size_bytes(size_t b) const { return bytes_of(buckets_[b].flat); }

size_t GradientReducer::total_bytes() const {
  size_t s = 0;
  for (const auto& b : buckets_) s += bytes_of(b.flat);
  return s;
}

size_t GradientReducer::bytes_started() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_.bytes;
}

void GradientReducer::prepare(bool communicate) {
  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lk(mu_);
  if (armed_) throw std::logic_error("GradientReducer::prepare: the previous communicating backward was not finished");
  for (auto& b : buckets_) {
    bool all_attached = true, none_defined = true;
    for (size_t k : b.params) {
      const auto& g = params_[k].grad();
      if (g.defined()) none_defined = false;
      if (!g.defined() || g.data_ptr() != views_[k].data_ptr() || g.strides() != views_[k].strides())
        all_attached = false;
    }
    if (all_attached) continue;
    if (none_defined) b.flat.zero_();  // after zero_grad (set to none): one memset
    for (size_t k : b.params) {
      auto& g = params_[k].mutable_grad();
      if (g.defined() && g.data_ptr() == views_[k].data_ptr()) continue;
      if (!none_defined) {
        if (g.defined()) views_[k].copy_(g);
        else views_[k].zero_();
      }
      g = views_[k];
    }
  }
  armed_ = communicate;
  next_ = 0;
  std::fill(seen_.begin(), seen_.end(), 0);
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.ready = false;
    b.work = ringlink::Work();
  }
  stats_ = ReductionStats{};
}

void GradientReducer::on_gradient(size_t k) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!armed_ || seen_[k]) return;
  seen_[k] = 1;
  auto& b = buckets_[bucket_of_[k]];
  if (--b.pending == 0 && overlap_) {
    b.ready = true;
    start_ready_buckets();
  }
}

void GradientReducer::start_ready_buckets() {
  // In bucket order only: every rank must issue the same collectives in the same order.
  while (next_ < buckets_.size() && buckets_[next_].ready) start(next_++, /*from_hook=*/true);
}

void GradientReducer::start(size_t b, bool from_hook) {
  auto& bucket = buckets_[b];
  bucket.work = group_.iallreduce(bucket.flat, ringlink::ReduceOp::Sum);
  stats_.bytes += bytes_of(bucket.flat);
  ++stats_.buckets;
  if (from_hook) ++stats_.started_during_backward;
}

ReductionStats GradientReducer::finish() {
  std::unique_lock<std::mutex> lk(mu_);
  if (!armed_) throw std::logic_error("GradientReducer::finish without a communicating backward");
  armed_ = false;
  const auto t0 = std::chrono::steady_clock::now();
  // Buckets a hook did not start (the blocking baseline, or a parameter without a gradient).
  while (next_ < buckets_.size()) start(next_++, /*from_hook=*/false);
  lk.unlock();
  for (auto& b : buckets_) b.work.wait();
  lk.lock();
  stats_.wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats_;
}

}  // namespace yolo::ddp
