#include "process_group.h"

#include <limits>

#include "gil.h"
#include "stream_order.h"
#include "tensor_args.h"

namespace ringlink_torch {

namespace {

// Data movement ignores the element type: bytes of any dtype (bool, int16, complex, ...) move.
constexpr ringlink::DataType kBytes = ringlink::DataType::UInt8;

int checked_root(const ArgContext& c, int64_t root, int64_t root_tensor) {
  if (root_tensor != 0) throw NotSupportedError(std::string(c.op) + " with rootTensor != 0 (one tensor per rank)");
  if (root < 0 || root > std::numeric_limits<int>::max()) bad_argument(c, "root " + std::to_string(root) + " is out of range");
  return static_cast<int>(root);
}

// output and input of one tensor form: `big` holds WORLD_SIZE times the elements of `small`.
void check_pair(const ArgContext& c, const at::Tensor& output, const at::Tensor& input, int world_size,
                bool output_is_big) {
  check_dense(c, output);
  check_dense(c, input);
  if (output.scalar_type() != input.scalar_type())
    bad_argument(c, "the output is " + dtype_name(output.scalar_type()) + " but the input is " +
                        dtype_name(input.scalar_type()));
  if (output.device() != input.device())
    bad_argument(c, "the output is on " + output.device().str() + " but the input is on " + input.device().str());
  const at::Tensor& big = output_is_big ? output : input;
  const at::Tensor& small = output_is_big ? input : output;
  if (big.numel() != small.numel() * world_size)
    bad_argument(c, "the output has " + std::to_string(output.numel()) + " elements and the input " +
                        std::to_string(input.numel()) + "; the " + (output_is_big ? "output" : "input") +
                        " must hold WORLD_SIZE=" + std::to_string(world_size) + " times the " +
                        (output_is_big ? "input" : "output"));
}

void check_count(const ArgContext& c, size_t got, size_t want, const char* what) {
  if (got != want)
    bad_argument(c, std::string(what) + " holds " + std::to_string(got) + " tensors; expected " + std::to_string(want));
}

void check_tag(const ArgContext& c, int tag) {
  if (tag < 0) bad_argument(c, "tag " + std::to_string(tag) + " is negative");
}

}  // namespace

RinglinkProcessGroup::RinglinkProcessGroup(std::unique_ptr<ringlink::Communicator> comm)
    : BackendBase(comm->rank(), comm->size()),
      comm_(std::move(comm)),
      completions_(std::make_unique<CompletionThread>()) {
  init();
}

RinglinkProcessGroup::~RinglinkProcessGroup() {
  // The completion thread may be running a Future's Python callback, which takes the GIL: join it
  // with the GIL released (the last reference often goes away in Python code).
  ReleasedGil nogil;
  completions_.reset();
  comm_.reset();
}

c10::intrusive_ptr<RinglinkWork> RinglinkProcessGroup::make_work(c10d::OpType type,
                                                                 std::vector<at::Tensor> outputs) const {
  return c10::make_intrusive<RinglinkWork>(comm_->rank(), type, std::move(outputs));
}

// Every operation is built inside `issue`: under the issue lock (its ringlink operations stay
// contiguous), and if a later part cannot be issued, the parts already issued still reach the
// completion thread, which keeps their tensors alive until ringlink is done with them.
template <typename Body>
static c10::intrusive_ptr<c10d::Work> issue(std::mutex& mu, c10::intrusive_ptr<RinglinkWork> w,
                                            CompletionThread& completions, Body&& body) {
  std::lock_guard lk(mu);
  try {
    body(*w);
  } catch (...) {
    completions.push(w);
    throw;
  }
  completions.push(w);
  return w;
}

// ---- the single-tensor bodies -----------------------------------------------------------------

void RinglinkProcessGroup::add_allreduce(RinglinkWork& w, const char* op, at::Tensor& t, const c10d::ReduceOp& rop) {
  ArgContext c{getRank(), op};
  check_dense(c, t);
  ringlink::ReduceOp o = reduce_op(c, rop);
  ReduceBuffer b = reduce_buffer(c, t, o);
  w.add(issue_in_stream_order(t, [&](auto... s) { return comm_->iallreduce(b.data, b.data, b.count, b.type, o, s...); }));
}

at::Tensor RinglinkProcessGroup::add_allgather_flat(RinglinkWork& w, const char* op, at::Tensor& input) {
  ArgContext c{getRank(), op};
  check_dense(c, input);
  at::Tensor flat = at::empty({getSize() * input.numel()}, input.options());
  w.keep_alive(input);
  w.keep_alive(flat);
  void* src = input.data_ptr();
  void* dst = flat.data_ptr();
  size_t bytes = byte_size(input);
  w.add(issue_in_stream_order(input, [&](auto... s) { return comm_->iallgather(src, dst, bytes, kBytes, s...); }));
  return flat;
}

void RinglinkProcessGroup::add_allgather_into(RinglinkWork& w, const char* op, at::Tensor& output, at::Tensor& input) {
  ArgContext c{getRank(), op};
  check_pair(c, output, input, getSize(), true);
  w.keep_alive(input);
  void* src = input.data_ptr();
  void* dst = output.data_ptr();
  size_t bytes = byte_size(input);
  w.add(issue_in_stream_order(input, [&](auto... s) { return comm_->iallgather(src, dst, bytes, kBytes, s...); }));
}

void RinglinkProcessGroup::add_reduce_scatter_from(RinglinkWork& w, const char* op, at::Tensor& output,
                                                   at::Tensor& input, const c10d::ReduceOp& rop) {
  ArgContext c{getRank(), op};
  check_pair(c, output, input, getSize(), false);
  ringlink::ReduceOp o = reduce_op(c, rop);
  ReduceBuffer in = reduce_buffer(c, input, o);
  ReduceBuffer out = reduce_buffer(c, output, o);
  w.keep_alive(input);
  w.add(issue_in_stream_order(
      input, [&](auto... s) { return comm_->ireduce_scatter(in.data, out.data, out.count, out.type, o, s...); }));
}

// ---- torch's calls -----------------------------------------------------------------------------

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::broadcast(std::vector<at::Tensor>& tensors,
                                                               const c10d::BroadcastOptions& opts) {
  ArgContext c{getRank(), "broadcast"};
  at::Tensor& t = single_tensor(c, tensors);
  int root = checked_root(c, opts.rootRank, opts.rootTensor);
  return issue(issue_mu_, make_work(c10d::OpType::BROADCAST, {t}), *completions_, [&](RinglinkWork& w) {
    void* p = t.data_ptr();
    size_t bytes = byte_size(t);
    w.add(issue_in_stream_order(t, [&](auto... s) { return comm_->ibroadcast(p, p, bytes, kBytes, root, s...); }));
  });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::allreduce(std::vector<at::Tensor>& tensors,
                                                               const c10d::AllreduceOptions& opts) {
  ArgContext c{getRank(), "all_reduce"};
  at::Tensor& t = single_tensor(c, tensors);
  return issue(issue_mu_, make_work(c10d::OpType::ALLREDUCE, {t}), *completions_,
               [&](RinglinkWork& w) { add_allreduce(w, c.op, t, opts.reduceOp); });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::allreduce_coalesced(std::vector<at::Tensor>& tensors,
                                                                         const c10d::AllreduceCoalescedOptions& opts) {
  ArgContext c{getRank(), "all_reduce_coalesced"};
  // Check every tensor before issuing any, so no rank issues half of the list.
  ringlink::ReduceOp o = reduce_op(c, opts.reduceOp);
  for (at::Tensor& t : tensors) {
    check_dense(c, t);
    reduce_buffer(c, t, o);
  }
  return issue(issue_mu_, make_work(c10d::OpType::ALLREDUCE_COALESCED, tensors), *completions_, [&](RinglinkWork& w) {
    for (at::Tensor& t : tensors) add_allreduce(w, c.op, t, opts.reduceOp);
  });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::allreduce_sparse(std::vector<at::Tensor>& /*tensors*/,
                                                                      const c10d::AllreduceOptions& /*opts*/) {
  throw NotSupportedError("all_reduce of sparse tensors");
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::reduce(std::vector<at::Tensor>& tensors,
                                                            const c10d::ReduceOptions& opts) {
  ArgContext c{getRank(), "reduce"};
  at::Tensor& t = single_tensor(c, tensors);
  int root = checked_root(c, opts.rootRank, opts.rootTensor);
  ringlink::ReduceOp o = reduce_op(c, opts.reduceOp);
  ReduceBuffer b = reduce_buffer(c, t, o);
  return issue(issue_mu_, make_work(c10d::OpType::REDUCE, {t}), *completions_, [&](RinglinkWork& w) {
    w.add(issue_in_stream_order(
        t, [&](auto... s) { return comm_->ireduce(b.data, b.data, b.count, b.type, o, root, s...); }));
  });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                                               std::vector<at::Tensor>& inputs,
                                                               const c10d::AllgatherOptions& /*opts*/) {
  ArgContext c{getRank(), "all_gather"};
  at::Tensor& input = single_tensor(c, inputs);
  if (outputs.size() != 1)
    throw NotSupportedError("all_gather with " + std::to_string(outputs.size()) + " output lists (one per rank)");
  std::vector<at::Tensor>& outs = outputs[0];
  check_count(c, outs.size(), static_cast<size_t>(getSize()), "tensor_list");
  check_like(c, input, outs, "tensor_list");
  return issue(issue_mu_, make_work(c10d::OpType::ALLGATHER, outs), *completions_, [&](RinglinkWork& w) {
    at::Tensor flat = add_allgather_flat(w, c.op, input);
    w.on_success([flat, outs, n = input.numel()]() mutable {
      for (size_t r = 0; r < outs.size(); ++r)
        copy_settled(outs[r], flat.narrow(0, static_cast<int64_t>(r) * n, n).view(outs[r].sizes()));
    });
  });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::_allgather_base(at::Tensor& output, at::Tensor& input,
                                                                     const c10d::AllgatherOptions& /*opts*/) {
  ArgContext c{getRank(), "all_gather_into_tensor"};
  check_pair(c, output, input, getSize(), true);
  return issue(issue_mu_, make_work(c10d::OpType::_ALLGATHER_BASE, {output}), *completions_,
               [&](RinglinkWork& w) { add_allgather_into(w, c.op, output, input); });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::allgather_coalesced(
    std::vector<std::vector<at::Tensor>>& output_lists, std::vector<at::Tensor>& inputs,
    const c10d::AllgatherOptions& /*opts*/) {
  ArgContext c{getRank(), "all_gather_coalesced"};
  check_count(c, output_lists.size(), static_cast<size_t>(getSize()), "output_tensor_lists");
  std::vector<at::Tensor> all_outputs;
  for (size_t r = 0; r < output_lists.size(); ++r) {
    check_count(c, output_lists[r].size(), inputs.size(), "output_tensor_lists[rank]");
    for (size_t j = 0; j < inputs.size(); ++j) {
      check_dense(c, inputs[j]);
      check_like(c, inputs[j], {output_lists[r][j]}, "output_tensor_lists[rank]");
      all_outputs.push_back(output_lists[r][j]);
    }
  }
  return issue(issue_mu_, make_work(c10d::OpType::ALLGATHER_COALESCED, all_outputs), *completions_,
               [&](RinglinkWork& w) {
                 std::vector<at::Tensor> flats;
                 for (at::Tensor& in : inputs) flats.push_back(add_allgather_flat(w, c.op, in));
                 w.on_success([flats, lists = output_lists]() mutable {
                   for (size_t r = 0; r < lists.size(); ++r)
                     for (size_t j = 0; j < flats.size(); ++j) {
                       int64_t n = lists[r][j].numel();
                       copy_settled(lists[r][j],
                                    flats[j].narrow(0, static_cast<int64_t>(r) * n, n).view(lists[r][j].sizes()));
                     }
                 });
               });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::allgather_into_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs, const c10d::AllgatherOptions& /*opts*/) {
  ArgContext c{getRank(), "all_gather_into_tensor_coalesced"};
  check_count(c, outputs.size(), inputs.size(), "outputs");
  for (size_t j = 0; j < inputs.size(); ++j) check_pair(c, outputs[j], inputs[j], getSize(), true);
  return issue(issue_mu_, make_work(c10d::OpType::ALLGATHER_COALESCED, outputs), *completions_,
               [&](RinglinkWork& w) {
                 for (size_t j = 0; j < inputs.size(); ++j) add_allgather_into(w, c.op, outputs[j], inputs[j]);
               });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::reduce_scatter(std::vector<at::Tensor>& outputs,
                                                                    std::vector<std::vector<at::Tensor>>& inputs,
                                                                    const c10d::ReduceScatterOptions& opts) {
  ArgContext c{getRank(), "reduce_scatter"};
  at::Tensor& output = single_tensor(c, outputs);
  if (inputs.size() != 1)
    throw NotSupportedError("reduce_scatter with " + std::to_string(inputs.size()) + " input lists (one per rank)");
  std::vector<at::Tensor>& ins = inputs[0];
  check_count(c, ins.size(), static_cast<size_t>(getSize()), "input_list");
  check_like(c, output, ins, "input_list");
  reduce_buffer(c, output, reduce_op(c, opts.reduceOp));
  return issue(issue_mu_, make_work(c10d::OpType::REDUCE_SCATTER, {output}), *completions_, [&](RinglinkWork& w) {
    std::vector<at::Tensor> flat_parts;
    for (const at::Tensor& t : ins) flat_parts.push_back(t.reshape({-1}));
    at::Tensor flat = at::cat(flat_parts, 0);
    add_reduce_scatter_from(w, c.op, output, flat, opts.reduceOp);
  });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::_reduce_scatter_base(at::Tensor& output, at::Tensor& input,
                                                                          const c10d::ReduceScatterOptions& opts) {
  ArgContext c{getRank(), "reduce_scatter_tensor"};
  check_pair(c, output, input, getSize(), false);
  reduce_buffer(c, output, reduce_op(c, opts.reduceOp));
  return issue(issue_mu_, make_work(c10d::OpType::_REDUCE_SCATTER_BASE, {output}), *completions_,
               [&](RinglinkWork& w) { add_reduce_scatter_from(w, c.op, output, input, opts.reduceOp); });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::reduce_scatter_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs, const c10d::ReduceScatterOptions& opts) {
  ArgContext c{getRank(), "reduce_scatter_tensor_coalesced"};
  check_count(c, outputs.size(), inputs.size(), "outputs");
  ringlink::ReduceOp o = reduce_op(c, opts.reduceOp);
  for (size_t j = 0; j < inputs.size(); ++j) {
    check_pair(c, outputs[j], inputs[j], getSize(), false);
    reduce_buffer(c, outputs[j], o);
  }
  return issue(issue_mu_, make_work(c10d::OpType::REDUCE_SCATTER, outputs), *completions_,
               [&](RinglinkWork& w) {
                 for (size_t j = 0; j < inputs.size(); ++j)
                   add_reduce_scatter_from(w, c.op, outputs[j], inputs[j], opts.reduceOp);
               });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::barrier(const c10d::BarrierOptions& /*opts*/) {
  return issue(issue_mu_, make_work(c10d::OpType::BARRIER, {}), *completions_,
               [&](RinglinkWork& w) { w.add(comm_->ibarrier()); });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::send(std::vector<at::Tensor>& tensors, int dst_rank, int tag) {
  ArgContext c{getRank(), "send"};
  at::Tensor& t = single_tensor(c, tensors);
  check_tag(c, tag);
  return issue(issue_mu_, make_work(c10d::OpType::SEND, {t}), *completions_, [&](RinglinkWork& w) {
    const void* p = t.data_ptr();
    size_t bytes = byte_size(t);
    auto peer_tag = static_cast<uint64_t>(tag);
    w.add(issue_in_stream_order(t, [&](auto... s) { return comm_->isend(p, bytes, dst_rank, peer_tag, s...); }));
  });
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::recv(std::vector<at::Tensor>& tensors, int src_rank, int tag) {
  ArgContext c{getRank(), "recv"};
  at::Tensor& t = single_tensor(c, tensors);
  check_tag(c, tag);
  return issue(issue_mu_, make_work(c10d::OpType::RECV, {t}), *completions_, [&](RinglinkWork& w) {
    void* p = t.data_ptr();
    size_t bytes = byte_size(t);
    auto peer_tag = static_cast<uint64_t>(tag);
    w.add(issue_in_stream_order(t, [&](auto... s) { return comm_->irecv(p, bytes, src_rank, peer_tag, s...); }));
  });
}

// ---- what ringlink does not do -------------------------------------------------------------

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::gather(std::vector<std::vector<at::Tensor>>&,
                                                            std::vector<at::Tensor>&, const c10d::GatherOptions&) {
  throw NotSupportedError("gather (all_gather gives every rank, the root included, the same tensors)");
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::scatter(std::vector<at::Tensor>&,
                                                             std::vector<std::vector<at::Tensor>>&,
                                                             const c10d::ScatterOptions&) {
  throw NotSupportedError("scatter (broadcast from the root, then take this rank's slice)");
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::alltoall_base(at::Tensor&, at::Tensor&, std::vector<int64_t>&,
                                                                   std::vector<int64_t>&,
                                                                   const c10d::AllToAllOptions&) {
  throw NotSupportedError("all_to_all_single");
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::alltoall(std::vector<at::Tensor>&, std::vector<at::Tensor>&,
                                                              const c10d::AllToAllOptions&) {
  throw NotSupportedError("all_to_all");
}

c10::intrusive_ptr<c10d::Work> RinglinkProcessGroup::recvAnysource(std::vector<at::Tensor>&, int) {
  throw NotSupportedError("recv from any source (pass src)");
}

void RinglinkProcessGroup::monitoredBarrier(const c10d::BarrierOptions&, bool) {
  throw NotSupportedError(
      "monitored_barrier (use barrier: a rank that died or stays silent is named by the error every other rank "
      "gets)");
}

}  // namespace ringlink_torch
