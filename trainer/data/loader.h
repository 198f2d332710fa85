// Batches built on worker threads and handed out in order through a bounded
// prefetch window, so the training loop never waits while workers keep up.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"
#include "train/hyp.h"

namespace yolo {

struct Batch {
  torch::Tensor images;   // uint8 (B, S, S, 3), pinned when the loader pins
  torch::Tensor targets;  // float (N, 6): image index in batch, class, x, y, w, h (normalised)
  std::vector<size_t> indices;  // dataset indices
  std::vector<Letterbox> letterboxes;  // per image, where it sits in the square (unaugmented batches)
};

struct LoaderOptions {
  int batch_size = 16;
  int img_size = 640;
  int workers = 4;
  int prefetch = 0;  // batches ahead of the consumer; 0: workers + 2
  bool augment = false;
  bool shuffle = false;
  bool pin_memory = false;
  uint64_t seed = 0;
  Hyp hyp;
  // Data parallelism: this rank's share of each epoch's order (ddp/sampler.h); pad_shards
  // gives every rank the same number of samples (training), otherwise none is repeated.
  int rank = 0, world_size = 1;
  bool pad_shards = true;
};

class BatchLoader {
 public:
  BatchLoader(const Dataset& ds, const LoaderOptions& opts);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int num_batches() const;
  // Begins an epoch: the order (and every augmentation) depends only on
  // (seed, epoch) and a sample's position in the epoch's global order.
  void start_epoch(int epoch);
  // Next batch of the current epoch in order; false once the epoch is done.
  // Rethrows a worker's exception.
  bool next(Batch* out);
  // Synchronous build of batch b of an epoch (tests, and workers = 0).
  Batch build_batch(int epoch, int b) const;

 private:
  Batch build(int epoch, const std::vector<size_t>& indices, const std::vector<size_t>& positions) const;
  void worker_loop();

  const Dataset& ds_;
  LoaderOptions opts_;
  std::vector<size_t> order_, positions_;  // this rank's dataset indices, and their global positions
  size_t shard_size_ = 0;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_ready_;
  std::map<int, Batch> ready_;
  int epoch_ = -1;
  int next_claim_ = 0, next_consume_ = 0;
  int generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace yolo
