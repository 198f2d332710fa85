// Error construction and the to_string / parse functions of the public enums.
#include <fmt/format.h>

#include "ringlink/error.h"
#include "ringlink/options.h"
#include "ringlink/types.h"

namespace ringlink {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Timeout: return "timeout";
    case ErrorKind::PeerLost: return "peer lost";
    case ErrorKind::Mismatch: return "mismatch";
    case ErrorKind::InvalidArgument: return "invalid argument";
    case ErrorKind::Transport: return "transport error";
  }
  return "error";
}

namespace {
std::string format_error(ErrorKind kind, int rank, int peer, const std::string& op, const std::string& detail) {
  std::string who = rank >= 0 ? fmt::format("rank {}", rank) : std::string("ringlink");
  std::string with = peer >= 0 ? fmt::format(" with peer {}", peer) : std::string();
  return fmt::format("{}: {} in {}{}: {}", who, to_string(kind), op, with, detail);
}
}  // namespace

Error::Error(ErrorKind kind, int rank, int peer, std::string operation, std::string detail)
    : std::runtime_error(format_error(kind, rank, peer, operation, detail)),
      kind_(kind),
      rank_(rank),
      peer_(peer),
      operation_(std::move(operation)),
      detail_(std::move(detail)) {}

void throw_error(ErrorKind kind, int rank, int peer, std::string operation, std::string detail) {
  switch (kind) {
    case ErrorKind::Timeout: throw TimeoutError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::PeerLost: throw PeerLostError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::Mismatch: throw MismatchError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::InvalidArgument: throw InvalidArgumentError(rank, peer, std::move(operation), std::move(detail));
    case ErrorKind::Transport: throw TransportError(rank, peer, std::move(operation), std::move(detail));
  }
  throw TransportError(rank, peer, std::move(operation), std::move(detail));
}

std::string_view to_string(DataType t) {
  switch (t) {
    case DataType::Float32: return "float";
    case DataType::Float64: return "double";
    case DataType::Float16: return "half";
    case DataType::BFloat16: return "bfloat16";
    case DataType::Int8: return "int8";
    case DataType::UInt8: return "uint8";
    case DataType::Int32: return "int32";
    case DataType::Int64: return "int64";
  }
  return "?";
}

std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Prod: return "prod";
    case ReduceOp::Min: return "min";
    case ReduceOp::Max: return "max";
    case ReduceOp::Avg: return "avg";
  }
  return "?";
}

std::string_view to_string(MemoryKind k) { return k == MemoryKind::Host ? "host" : "cuda"; }

std::optional<DataType> parse_data_type(std::string_view s) {
  if (s == "float" || s == "float32" || s == "fp32" || s == "f32") return DataType::Float32;
  if (s == "double" || s == "float64" || s == "fp64" || s == "f64") return DataType::Float64;
  if (s == "half" || s == "float16" || s == "fp16" || s == "f16") return DataType::Float16;
  if (s == "bfloat16" || s == "bf16") return DataType::BFloat16;
  if (s == "int8" || s == "char") return DataType::Int8;
  if (s == "uint8") return DataType::UInt8;
  if (s == "int32" || s == "int") return DataType::Int32;
  if (s == "int64") return DataType::Int64;
  return std::nullopt;
}

std::optional<ReduceOp> parse_reduce_op(std::string_view s) {
  if (s == "sum") return ReduceOp::Sum;
  if (s == "prod") return ReduceOp::Prod;
  if (s == "min") return ReduceOp::Min;
  if (s == "max") return ReduceOp::Max;
  if (s == "avg") return ReduceOp::Avg;
  return std::nullopt;
}

std::string_view to_string(TransportKind k) {
  switch (k) {
    case TransportKind::Auto: return "auto";
    case TransportKind::Verbs: return "verbs";
    case TransportKind::Ucx: return "ucx";
  }
  return "?";
}

std::string_view to_string(Algorithm a) {
  switch (a) {
    case Algorithm::Auto: return "auto";
    case Algorithm::Ring: return "ring";
    case Algorithm::Tree: return "tree";
  }
  return "?";
}

std::string_view to_string(LogLevel l) {
  switch (l) {
    case LogLevel::Warn: return "WARN";
    case LogLevel::Info: return "INFO";
    case LogLevel::Trace: return "TRACE";
  }
  return "?";
}

std::string_view to_string(Launcher l) {
  switch (l) {
    case Launcher::None: return "none";
    case Launcher::Explicit: return "explicit";
    case Launcher::Torchrun: return "torchrun";
    case Launcher::OpenMpi: return "openmpi";
    case Launcher::Slurm: return "slurm";
  }
  return "?";
}

}  // namespace ringlink
