// The ranks of a data-parallel job: who this process is (the launcher's variables, read by
// the library: ringlink-run, torchrun, mpirun, srun) and the one ringlink communicator the
// ranks share, with the tensor-level collectives the trainer needs.
#pragma once

#include <ringlink/ringlink.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace yolo::ddp {

class ProcessGroup {
 public:
  // A group from the launcher's variables, or nullptr when none are set (a plain process).
  static std::shared_ptr<ProcessGroup> from_environment();
  explicit ProcessGroup(ringlink::Options options);
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool primary() const { return rank() == 0; }
  std::string describe() const;  // "2 ranks (torchrun), ucx"
  ringlink::Communicator& comm() { return comm_; }

  // In place on a contiguous tensor (host or CUDA).
  ringlink::Work iallreduce(torch::Tensor& t, ringlink::ReduceOp op);
  void allreduce(torch::Tensor& t, ringlink::ReduceOp op) { iallreduce(t, op).wait(); }
  void broadcast(torch::Tensor& t, int root);
  // (size(), t.sizes()...): every rank's t in rank order.
  torch::Tensor allgather(const torch::Tensor& t);
  void broadcast(std::string& s, int root);
  // Every tensor of the list takes root's values (packed into one message per dtype and device).
  void broadcast(const std::vector<torch::Tensor>& tensors, int root);
  // The sorted union of every rank's indices (each below `bound`, which all ranks pass alike).
  std::vector<size_t> union_of(const std::vector<size_t>& indices, size_t bound);
  void barrier() { comm_.barrier(); }

 private:
  ringlink::Communicator comm_;
  int local_rank_, local_size_;
  std::string launcher_;
};

ringlink::DataType data_type_of(const torch::Tensor& t);

// The device of a rank: --device "0,1,2,3" gives local rank r the r-th entry; "cpu", "N" or
// "cuda:N" is every rank's; empty or "cuda" is cuda:local_rank when CUDA is there, else cpu.
torch::Device rank_device(const std::string& spec, int local_rank, int local_size);

}  // namespace yolo::ddp
