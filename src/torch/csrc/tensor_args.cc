#include "tensor_args.h"

#include <c10/core/ScalarType.h>

#include <ringlink/error.h>

namespace ringlink_torch {

void bad_argument(const ArgContext& c, const std::string& detail) {
  throw ringlink::InvalidArgumentError(c.rank, -1, c.op, detail);
}

std::string dtype_name(at::ScalarType t) {
  // Python's names, which is what a torch user wrote.
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kShort: return "int16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kBool: return "bool";
    case at::kComplexHalf: return "complex32";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    default: return c10::toString(t);
  }
}

void check_dense(const ArgContext& c, const at::Tensor& t) {
  if (!t.defined()) bad_argument(c, "an undefined tensor was passed");
  if (t.is_sparse()) throw NotSupportedError(std::string(c.op) + " of sparse tensors");
  if (t.layout() != at::kStrided) throw NotSupportedError(std::string(c.op) + " of tensors with a non-strided layout");
  if (!t.is_contiguous())
    bad_argument(c, "the tensor is not contiguous (pass tensor.contiguous(), as for gloo)");
  if (!t.is_cpu() && !t.is_cuda())
    throw NotSupportedError(std::string(c.op) + " of tensors on device " + t.device().str() + " (CPU and CUDA only)");
}

at::Tensor& single_tensor(const ArgContext& c, std::vector<at::Tensor>& tensors) {
  if (tensors.size() != 1)
    throw NotSupportedError(std::string(c.op) + " with " + std::to_string(tensors.size()) +
                            " tensors per rank (one tensor per rank, one device per process)");
  check_dense(c, tensors[0]);
  return tensors[0];
}

void check_like(const ArgContext& c, const at::Tensor& like, const std::vector<at::Tensor>& ts, const char* what) {
  for (size_t i = 0; i < ts.size(); ++i) {
    const at::Tensor& t = ts[i];
    check_dense(c, t);
    if (t.scalar_type() != like.scalar_type())
      bad_argument(c, std::string(what) + "[" + std::to_string(i) + "] is " + dtype_name(t.scalar_type()) +
                          " but the input is " + dtype_name(like.scalar_type()));
    if (t.numel() != like.numel())
      throw NotSupportedError(std::string(c.op) + " with tensors of different sizes (" + what + "[" +
                              std::to_string(i) + "] has " + std::to_string(t.numel()) + " elements, the input " +
                              std::to_string(like.numel()) + ")");
    if (t.device() != like.device())
      bad_argument(c, std::string(what) + "[" + std::to_string(i) + "] is on " + t.device().str() +
                          " but the input is on " + like.device().str());
  }
}

ringlink::ReduceOp reduce_op(const ArgContext& c, const c10d::ReduceOp& op) {
  switch (op.op_) {
    case c10d::ReduceOp::SUM: return ringlink::ReduceOp::Sum;
    case c10d::ReduceOp::AVG: return ringlink::ReduceOp::Avg;
    case c10d::ReduceOp::PRODUCT: return ringlink::ReduceOp::Prod;
    case c10d::ReduceOp::MIN: return ringlink::ReduceOp::Min;
    case c10d::ReduceOp::MAX: return ringlink::ReduceOp::Max;
    case c10d::ReduceOp::BAND: throw NotSupportedError(std::string(c.op) + " with ReduceOp.BAND");
    case c10d::ReduceOp::BOR: throw NotSupportedError(std::string(c.op) + " with ReduceOp.BOR");
    case c10d::ReduceOp::BXOR: throw NotSupportedError(std::string(c.op) + " with ReduceOp.BXOR");
    case c10d::ReduceOp::PREMUL_SUM: throw NotSupportedError(std::string(c.op) + " with ReduceOp.PREMUL_SUM");
    default: break;
  }
  throw NotSupportedError(std::string(c.op) + " with reduce op " + std::to_string(static_cast<int>(op.op_)));
}

namespace {

bool ringlink_type(at::ScalarType t, ringlink::DataType& out) {
  switch (t) {
    case at::kFloat: out = ringlink::DataType::Float32; return true;
    case at::kDouble: out = ringlink::DataType::Float64; return true;
    case at::kHalf: out = ringlink::DataType::Float16; return true;
    case at::kBFloat16: out = ringlink::DataType::BFloat16; return true;
    case at::kChar: out = ringlink::DataType::Int8; return true;
    case at::kByte: out = ringlink::DataType::UInt8; return true;
    case at::kInt: out = ringlink::DataType::Int32; return true;
    case at::kLong: out = ringlink::DataType::Int64; return true;
    default: return false;
  }
}

}  // namespace

ReduceBuffer reduce_buffer(const ArgContext& c, const at::Tensor& t, ringlink::ReduceOp op) {
  ReduceBuffer b;
  b.data = t.data_ptr();
  b.count = static_cast<size_t>(t.numel());
  at::ScalarType st = t.scalar_type();
  if (st == at::kComplexFloat || st == at::kComplexDouble) {
    // (a+bi) + (c+di) is a sum of the parts; a product, min or max is not.
    if (op != ringlink::ReduceOp::Sum && op != ringlink::ReduceOp::Avg)
      throw NotSupportedError(std::string(c.op) + " of complex tensors with " + std::string(ringlink::to_string(op)) +
                              " (sum and avg only)");
    b.count *= 2;
    b.type = st == at::kComplexFloat ? ringlink::DataType::Float32 : ringlink::DataType::Float64;
    return b;
  }
  if (!ringlink_type(st, b.type))
    throw NotSupportedError(std::string(c.op) + " of " + dtype_name(st) +
                            " tensors (reductions take float32, float64, float16, bfloat16, int8, uint8, int32, "
                            "int64 and complex for sum/avg)");
  return b;
}

size_t byte_size(const at::Tensor& t) { return static_cast<size_t>(t.numel()) * t.element_size(); }

}  // namespace ringlink_torch
