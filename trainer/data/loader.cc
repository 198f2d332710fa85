#include "data/loader.h"

#include <algorithm>
#include <stdexcept>

#include "ddp/sampler.h"

namespace yolo {

BatchLoader::BatchLoader(const Dataset& ds, const LoaderOptions& opts) : ds_(ds), opts_(opts) {
  if (opts_.prefetch <= 0) opts_.prefetch = std::max(2, opts_.workers + 2);
  const auto shard = shard_order(epoch_permutation(ds_.size(), opts_.seed, 0, false), opts_.rank, opts_.world_size,
                                 opts_.pad_shards);
  order_ = shard.indices;
  positions_ = shard.positions;
  shard_size_ = order_.size();
  for (int i = 0; i < opts_.workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : threads_) t.join();
}

int BatchLoader::num_batches() const {
  return static_cast<int>((shard_size_ + opts_.batch_size - 1) / opts_.batch_size);
}

void BatchLoader::start_epoch(int epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  epoch_ = epoch;
  auto shard = shard_order(epoch_permutation(ds_.size(), opts_.seed, epoch, opts_.shuffle), opts_.rank,
                           opts_.world_size, opts_.pad_shards);
  order_ = std::move(shard.indices);
  positions_ = std::move(shard.positions);
  ready_.clear();
  next_claim_ = next_consume_ = 0;
  error_ = nullptr;
  ++generation_;
  cv_work_.notify_all();
}

Batch BatchLoader::build_batch(int epoch, int b) const {
  const size_t begin = static_cast<size_t>(b) * opts_.batch_size;
  const size_t end = std::min(order_.size(), begin + opts_.batch_size);
  return build(epoch, std::vector<size_t>(order_.begin() + begin, order_.begin() + end),
               std::vector<size_t>(positions_.begin() + begin, positions_.begin() + end));
}

Batch BatchLoader::build(int epoch, const std::vector<size_t>& indices, const std::vector<size_t>& positions) const {
  const int S = opts_.img_size;
  const int64_t n = static_cast<int64_t>(indices.size());
  auto opt = torch::TensorOptions().dtype(torch::kUInt8);
  if (opts_.pin_memory) opt = opt.pinned_memory(true);
  Batch batch;
  batch.images = torch::empty({n, S, S, 3}, opt);
  uint8_t* dst = batch.images.data_ptr<uint8_t>();
  std::vector<float> rows;
  std::vector<LabelRow> labels;
  for (int64_t i = 0; i < n; ++i) {
    const size_t index = indices[i];
    SampleRng rng(mix_seed(opts_.seed, static_cast<uint64_t>(epoch), positions[i]));
    Letterbox lb;
    build_sample(ds_, index, S, opts_.augment, opts_.hyp, rng, dst + i * S * S * 3, &labels, &lb);
    batch.letterboxes.push_back(lb);
    for (const auto& l : labels) rows.insert(rows.end(), {static_cast<float>(i), l[0], l[1], l[2], l[3], l[4]});
    batch.indices.push_back(index);
  }
  batch.targets = torch::from_blob(rows.data(), {static_cast<int64_t>(rows.size() / 6), 6}, torch::kFloat).clone();
  return batch;
}

void BatchLoader::worker_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_work_.wait(lock, [&] {
      return stop_ || (epoch_ >= 0 && next_claim_ < num_batches() && next_claim_ < next_consume_ + opts_.prefetch);
    });
    if (stop_) return;
    const int b = next_claim_++;
    const int epoch = epoch_, gen = generation_;
    const size_t begin = static_cast<size_t>(b) * opts_.batch_size;
    const size_t end = std::min(order_.size(), begin + opts_.batch_size);
    const std::vector<size_t> indices(order_.begin() + begin, order_.begin() + end);
    const std::vector<size_t> positions(positions_.begin() + begin, positions_.begin() + end);
    lock.unlock();
    Batch batch;
    std::exception_ptr err;
    try {
      batch = build(epoch, indices, positions);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (gen != generation_) continue;  // epoch restarted meanwhile; drop it
    if (err && !error_) error_ = err;
    ready_[b] = std::move(batch);
    cv_ready_.notify_all();
  }
}

bool BatchLoader::next(Batch* out) {
  // Workers only build batches of a started epoch: waiting before one would never end.
  if (epoch_ < 0) throw std::logic_error("BatchLoader::next() called before start_epoch()");
  if (threads_.empty()) {  // synchronous mode
    if (next_consume_ >= num_batches()) return false;
    *out = build_batch(epoch_, next_consume_++);
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (next_consume_ >= num_batches()) return false;
  cv_ready_.wait(lock, [&] { return error_ || ready_.count(next_consume_) > 0; });
  if (error_) std::rethrow_exception(error_);
  auto it = ready_.find(next_consume_);
  *out = std::move(it->second);
  ready_.erase(it);
  ++next_consume_;
  cv_work_.notify_all();
  return true;
}

}  // namespace yolo
