// The torch.distributed backend "ringlink": torch's collective calls mapped onto one
// ringlink::Communicator (the public API only).
//
// Every call issues its ringlink operations at once and returns a RinglinkWork; ringlink runs
// them on its progress thread in issue order. Calls are serialized so that the operations of one
// torch call (a coalesced list) stay contiguous in that order.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ringlink/communicator.h>

#include "torch_compat.h"
#include "work.h"

namespace ringlink_torch {

class RinglinkProcessGroup final : public BackendBase {
 public:
  explicit RinglinkProcessGroup(std::unique_ptr<ringlink::Communicator> comm);
  ~RinglinkProcessGroup() override;

  const std::string getBackendName() const override { return "ringlink"; }
  const ringlink::Communicator& communicator() const { return *comm_; }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts = c10d::BroadcastOptions()) override;
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts = c10d::AllreduceOptions()) override;
  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(
      std::vector<at::Tensor>& tensors,
      const c10d::AllreduceCoalescedOptions& opts = c10d::AllreduceCoalescedOptions()) override;
  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                        const c10d::ReduceOptions& opts = c10d::ReduceOptions()) override;
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& opts = c10d::AllgatherOptions()) override;
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions& opts = c10d::AllgatherOptions()) override;
  c10::intrusive_ptr<c10d::Work> allgather_coalesced(
      std::vector<std::vector<at::Tensor>>& output_lists, std::vector<at::Tensor>& inputs,
      const c10d::AllgatherOptions& opts = c10d::AllgatherOptions()) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter(
      std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
      const c10d::ReduceScatterOptions& opts = c10d::ReduceScatterOptions()) override;
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(
      at::Tensor& output, at::Tensor& input,
      const c10d::ReduceScatterOptions& opts = c10d::ReduceScatterOptions()) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts = c10d::BarrierOptions()) override;
  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dst_rank, int tag) override;
  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int src_rank, int tag) override;

  // torch 2.x only (see torch_compat.h).
  c10::intrusive_ptr<c10d::Work> allgather_into_tensor_coalesced(
      std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
      const c10d::AllgatherOptions& opts = c10d::AllgatherOptions()) RINGLINK_TORCH2_OVERRIDE;
  c10::intrusive_ptr<c10d::Work> reduce_scatter_tensor_coalesced(
      std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
      const c10d::ReduceScatterOptions& opts = c10d::ReduceScatterOptions()) RINGLINK_TORCH2_OVERRIDE;
  c10::intrusive_ptr<c10d::Work> allreduce_sparse(
      std::vector<at::Tensor>& tensors,
      const c10d::AllreduceOptions& opts = c10d::AllreduceOptions()) RINGLINK_TORCH2_OVERRIDE;

  // What ringlink does not do: "not supported by ringlink: ..." instead of torch's generic text.
  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                        std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts = c10d::GatherOptions()) override;
  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs,
                                         std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts = c10d::ScatterOptions()) override;
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                               std::vector<int64_t>& output_split_sizes,
                                               std::vector<int64_t>& input_split_sizes,
                                               const c10d::AllToAllOptions& opts = c10d::AllToAllOptions()) override;
  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions& opts = c10d::AllToAllOptions()) override;
  c10::intrusive_ptr<c10d::Work> recvAnysource(std::vector<at::Tensor>& tensors, int tag) override;
  void monitoredBarrier(const c10d::BarrierOptions& opts, bool wait_all_ranks = false) override;

 private:
  c10::intrusive_ptr<RinglinkWork> make_work(c10d::OpType type, std::vector<at::Tensor> outputs) const;

  // The single-tensor bodies that the list and coalesced forms are made of.
  void add_allreduce(RinglinkWork& w, const char* op, at::Tensor& t, const c10d::ReduceOp& rop);
  void add_allgather_into(RinglinkWork& w, const char* op, at::Tensor& output, at::Tensor& input);
  void add_reduce_scatter_from(RinglinkWork& w, const char* op, at::Tensor& output, at::Tensor& input,
                               const c10d::ReduceOp& rop);
  // Gathers `input` into a new flat tensor; returns it (copied out by the caller's on_success).
  at::Tensor add_allgather_flat(RinglinkWork& w, const char* op, at::Tensor& input);

  std::unique_ptr<ringlink::Communicator> comm_;
  std::mutex issue_mu_;
  std::unique_ptr<CompletionThread> completions_;
};

}  // namespace ringlink_torch
