// The names of the public enums: to_string for each, and the parse functions of those that
// settings and tools take by name, beside it, so each value has one spelling.
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

std::optional<ReduceOp> parse_reduce_op(std::string_view s) {
  for (ReduceOp op : kAllReduceOps)
    if (s == to_string(op)) return op;
  return std::nullopt;
}

std::string_view to_string(MemoryKind k) { return k == MemoryKind::Host ? "host" : "cuda"; }

std::string_view to_string(TransportKind k) {
  switch (k) {
    case TransportKind::Auto: return "auto";
    case TransportKind::Verbs: return "verbs";
    case TransportKind::Ucx: return "ucx";
  }
  return "?";
}

std::optional<TransportKind> parse_transport_kind(std::string_view s) {
  for (TransportKind k : {TransportKind::Auto, TransportKind::Verbs, TransportKind::Ucx})
    if (s == to_string(k)) return k;
  return std::nullopt;
}

std::string_view to_string(Algorithm a) {
  switch (a) {
    case Algorithm::Auto: return "auto";
    case Algorithm::Ring: return "ring";
    case Algorithm::Tree: return "tree";
  }
  return "?";
}

std::optional<Algorithm> parse_algorithm(std::string_view s) {
  for (Algorithm a : {Algorithm::Auto, Algorithm::Ring, Algorithm::Tree})
    if (s == to_string(a)) return a;
  return std::nullopt;
}

std::string_view to_string(WireDtype w) {
  switch (w) {
    case WireDtype::Off: return "off";
    case WireDtype::BF16: return "bf16";
    case WireDtype::FP16: return "fp16";
  }
  return "?";
}

std::optional<WireDtype> parse_wire_dtype(std::string_view s) {
  for (WireDtype w : {WireDtype::Off, WireDtype::BF16, WireDtype::FP16})
    if (s == to_string(w)) return w;
  return std::nullopt;
}

std::string_view to_string(LogLevel l) {
  switch (l) {
    case LogLevel::Warn: return "WARN";
    case LogLevel::Info: return "INFO";
    case LogLevel::Trace: return "TRACE";
  }
  return "?";
}

std::optional<LogLevel> parse_log_level(std::string_view s) {
  // The upper-case name, or all lower case ("info"), as RINGLINK_DEBUG has always taken them.
  if (s == "WARN" || s == "warn") return LogLevel::Warn;
  if (s == "INFO" || s == "info") return LogLevel::Info;
  if (s == "TRACE" || s == "trace") return LogLevel::Trace;
  return std::nullopt;
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
