#include "ddp/process_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>
#include <tuple>

#include "train/device.h"

namespace yolo::ddp {

namespace {

// A string from another rank is a path or a short option; anything longer is a fault.
constexpr int64_t kMaxBroadcastString = 1 << 20;

}  // namespace

ringlink::DataType data_type_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return ringlink::DataType::Float32;
    case torch::kDouble: return ringlink::DataType::Float64;
    case torch::kHalf: return ringlink::DataType::Float16;
    case torch::kBFloat16: return ringlink::DataType::BFloat16;
    case torch::kChar: return ringlink::DataType::Int8;
    case torch::kByte:
    case torch::kBool: return ringlink::DataType::UInt8;
    case torch::kInt: return ringlink::DataType::Int32;
    case torch::kLong: return ringlink::DataType::Int64;
    default: throw std::invalid_argument(fmt::format("no ringlink type for tensors of {}", c10::toString(t.scalar_type())));
  }
}

std::shared_ptr<ProcessGroup> ProcessGroup::from_environment() {
  ringlink::Options o = ringlink::Options::from_environment();
  if (o.launcher == ringlink::Launcher::None) return nullptr;
  return std::make_shared<ProcessGroup>(std::move(o));
}

ProcessGroup::ProcessGroup(ringlink::Options options)
    : comm_(options),
      local_rank_(comm_.options().local_rank),
      local_size_(comm_.options().local_world_size),
      launcher_(ringlink::to_string(comm_.options().launcher)) {}

std::string ProcessGroup::describe() const {
  return fmt::format("{} rank{} ({}, {})", size(), size() == 1 ? "" : "s", launcher_, comm_.transport_name());
}

ringlink::Work ProcessGroup::iallreduce(torch::Tensor& t, ringlink::ReduceOp op) {
  if (!t.is_contiguous()) throw std::invalid_argument("allreduce of a non-contiguous tensor");
  return comm_.iallreduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), data_type_of(t), op);
}

void ProcessGroup::broadcast(torch::Tensor& t, int root) {
  if (!t.is_contiguous()) throw std::invalid_argument("broadcast of a non-contiguous tensor");
  comm_.broadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), data_type_of(t), root);
}

torch::Tensor ProcessGroup::allgather(const torch::Tensor& t_in) {
  auto t = t_in.contiguous();
  std::vector<int64_t> shape{size()};
  shape.insert(shape.end(), t.sizes().begin(), t.sizes().end());
  auto out = torch::empty(shape, t.options());
  comm_.allgather(t.data_ptr(), out.data_ptr(), static_cast<size_t>(t.numel()), data_type_of(t));
  return out;
}

void ProcessGroup::broadcast(std::string& s, int root) {
  auto len = torch::tensor({static_cast<int64_t>(s.size())}, torch::kLong);
  broadcast(len, root);
  const int64_t n = len.item<int64_t>();
  if (n < 0 || n > kMaxBroadcastString)
    throw std::runtime_error(fmt::format("rank {}: broadcast from rank {} announced a string of {} bytes (limit {})",
                                         rank(), root, n, kMaxBroadcastString));
  if (rank() != root) s.assign(static_cast<size_t>(n), '\0');
  if (n > 0) comm_.broadcast(s.data(), s.data(), static_cast<size_t>(n), ringlink::DataType::UInt8, root);
}

void ProcessGroup::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  torch::NoGradGuard no_grad;
  // One flat message per (dtype, device): a model's state is a few hundred small tensors.
  std::map<std::tuple<int, int, int>, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    const auto d = t.device();
    groups[{static_cast<int>(t.scalar_type()), static_cast<int>(d.type()), d.index()}].push_back(t);
  }
  for (auto& [key, ts] : groups) {
    std::vector<torch::Tensor> flat_parts;
    for (auto& t : ts) flat_parts.push_back(t.detach().reshape({-1}));
    auto flat = torch::cat(flat_parts);
    broadcast(flat, root);
    if (rank() == root) continue;
    int64_t offset = 0;
    for (auto& t : ts) {
      t.detach().copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

std::vector<size_t> ProcessGroup::union_of(const std::vector<size_t>& indices, size_t bound) {
  // As a bitmap: its length is known on every rank, so no peer sizes an allocation.
  auto mask = torch::zeros({static_cast<int64_t>(bound)}, torch::kByte);
  auto* m = mask.data_ptr<uint8_t>();
  for (size_t i : indices) {
    if (i >= bound) throw std::out_of_range(fmt::format("union_of: index {} beyond {}", i, bound));
    m[i] = 1;
  }
  if (bound > 0) allreduce(mask, ringlink::ReduceOp::Max);
  std::vector<size_t> out;
  for (size_t i = 0; i < bound; ++i)
    if (m[i]) out.push_back(i);
  return out;
}

torch::Device rank_device(const std::string& spec, int local_rank, int local_size) {
  if (spec.find(',') != std::string::npos) {
    std::vector<std::string> list;
    size_t start = 0;
    for (size_t pos; (pos = spec.find(',', start)) != std::string::npos; start = pos + 1)
      list.push_back(spec.substr(start, pos - start));
    list.push_back(spec.substr(start));
    if (local_rank >= static_cast<int>(list.size()))
      throw std::runtime_error(fmt::format("--device {} lists {} devices for {} ranks on this host (local rank {} has none)",
                                           spec, list.size(), local_size, local_rank));
    return select_device(list[static_cast<size_t>(local_rank)]);
  }
  if (spec.empty() || spec == "cuda") {
    if (!torch::cuda::is_available()) {
      if (spec == "cuda") return select_device(spec);  // the error names the missing CUDA
      return torch::Device(torch::kCPU);
    }
    const int n = static_cast<int>(torch::cuda::device_count());
    if (local_rank >= n)
      throw std::runtime_error(fmt::format("local rank {} needs cuda:{}, but this host has {} CUDA device(s); "
                                           "give --device to share them (e.g. --device 0)",
                                           local_rank, local_rank, n));
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  return select_device(spec);
}

}  // namespace yolo::ddp
