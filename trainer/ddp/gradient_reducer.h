// Gradient buckets whose allreduce overlaps backward, as PyTorch DDP's Reducer does.
//
// Parameters, in reverse registration order (roughly the order in which backward produces
// their gradients), are packed into flat buckets of about `bucket_bytes` (the first one at
// most 1 MiB, so communication starts early). Every parameter's .grad is a view into its
// bucket, so gradient accumulation writes straight into the buffer that is reduced. During a
// communicating backward pass a hook on each parameter's gradient accumulator counts its
// bucket down; a complete bucket starts its iallreduce (SUM) at once, in bucket order, which
// every rank follows, while backward goes on. finish() starts whatever the hooks did not and
// waits only for what is still in flight. With bucket_bytes 0 there is one bucket, reduced
// after backward: the blocking baseline.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "ddp/process_group.h"

namespace torch::autograd {
struct Node;
}

namespace yolo::ddp {

struct ReductionStats {
  double wait_seconds = 0;         // finish(): time spent waiting for allreduces (exposed communication)
  size_t bytes = 0;                // gradient bytes allreduced
  int buckets = 0;                 // allreduces started
  int started_during_backward = 0; // of which from the hooks
};

class GradientReducer {
 public:
  // `params` in registration order; all must receive a gradient in every backward pass.
  GradientReducer(ProcessGroup& group, const std::vector<torch::Tensor>& params, size_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each backward pass: (re)attaches the gradients to the buckets (keeping any
  // accumulated values) and arms the hooks when this backward ends an accumulation cycle.
  void prepare(bool communicate);
  // After the communicating backward: every gradient holds the sum over ranks.
  ReductionStats finish();
  // Bytes launched by the hooks since prepare() (0 for a backward that does not communicate).
  size_t bytes_started() const;

  size_t num_buckets() const { return buckets_.size(); }
  size_t bucket_size_bytes(size_t b) const;
  size_t total_bytes() const;

 private:
  struct Bucket {
    torch::Tensor flat;
    std::vector<size_t> params;
    size_t pending = 0;
    bool ready = false;
    ringlink::Work work;
  };
  void on_gradient(size_t param);
  void start_ready_buckets();  // holds mu_
  void start(size_t b, bool from_hook);

  ProcessGroup& group_;
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> views_;
  std::vector<size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  std::vector<char> seen_;
  struct Hook {
    std::shared_ptr<torch::autograd::Node> accumulator;
    uintptr_t key;
  };
  std::vector<Hook> hooks_;
  bool overlap_;
  mutable std::mutex mu_;  // hooks may run on an autograd device thread
  bool armed_ = false;
  size_t next_ = 0;  // first bucket not started
  ReductionStats stats_;
};

}  // namespace yolo::ddp
