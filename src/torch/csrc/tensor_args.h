// Turning torch's arguments into ringlink's: element types, reduction operators, and the checks
// that refuse what ringlink cannot do instead of computing something else.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <ringlink/types.h>

namespace ringlink_torch {

// An operation, element type or argument form ringlink does not implement. Raised as
// ringlink_torch.NotSupportedError (a NotImplementedError) with "not supported by ringlink: ...".
class NotSupportedError : public std::runtime_error {
 public:
  explicit NotSupportedError(const std::string& what) : std::runtime_error("not supported by ringlink: " + what) {}
};

// A tensor as a reduction sees it: complex tensors reduce as their real and imaginary parts.
struct ReduceBuffer {
  void* data = nullptr;
  size_t count = 0;  // elements of `type`
  ringlink::DataType type = ringlink::DataType::Float32;
};

// The context every check names in its message: this rank and the torch operation.
struct ArgContext {
  int rank;
  const char* op;  // torch's name: "all_reduce", "broadcast", ...
};

// Throws InvalidArgumentError (ringlink's, naming the rank and the operation).
[[noreturn]] void bad_argument(const ArgContext& c, const std::string& detail);

// A dense, contiguous, strided tensor; anything else is refused (sparse: not supported).
void check_dense(const ArgContext& c, const at::Tensor& t);

// Exactly one tensor per rank, as every operation here takes (no multi-device lists).
at::Tensor& single_tensor(const ArgContext& c, std::vector<at::Tensor>& tensors);

// All of `ts` with the dtype, element count and device of `like`.
void check_like(const ArgContext& c, const at::Tensor& like, const std::vector<at::Tensor>& ts, const char* what);

// The ringlink reduction operator for torch's; BAND/BOR/BXOR/PREMUL_SUM are not supported.
ringlink::ReduceOp reduce_op(const ArgContext& c, const c10d::ReduceOp& op);

// The tensor's memory as ringlink reduces it with `op`. Refuses element types ringlink has no
// arithmetic for (bool, int16, ...) and complex tensors with an operator other than sum/avg.
ReduceBuffer reduce_buffer(const ArgContext& c, const at::Tensor& t, ringlink::ReduceOp op);

// Bytes of a dense tensor (data movement ignores the element type).
size_t byte_size(const at::Tensor& t);

std::string dtype_name(at::ScalarType t);

}  // namespace ringlink_torch
