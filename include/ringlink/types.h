// Element types, reduction operators and memory kinds understood by the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ringlink {

enum class DataType : uint8_t { Float32, Float64, Float16, BFloat16, Int8, UInt8, Int32, Int64 };
inline constexpr DataType kAllDataTypes[] = {DataType::Float32, DataType::Float64, DataType::Float16,
                                             DataType::BFloat16, DataType::Int8,   DataType::UInt8,
                                             DataType::Int32,   DataType::Int64};

enum class ReduceOp : uint8_t { Sum, Prod, Min, Max, Avg };
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Min, ReduceOp::Max,
                                             ReduceOp::Avg};

enum class MemoryKind : uint8_t { Host, Cuda };

constexpr size_t size_of(DataType t) {
  switch (t) {
    case DataType::Float64:
    case DataType::Int64: return 8;
    case DataType::Float32:
    case DataType::Int32: return 4;
    case DataType::Float16:
    case DataType::BFloat16: return 2;
    case DataType::Int8:
    case DataType::UInt8: return 1;
  }
  return 0;
}

constexpr bool is_floating_point(DataType t) {
  return t == DataType::Float32 || t == DataType::Float64 || t == DataType::Float16 || t == DataType::BFloat16;
}

// Names as nccl-tests prints them: float, double, half, bfloat16, int8, uint8, int32, int64.
// parse_* take those names (and, for types, float32, fp16, bf16, ...); nullopt for others.
std::string_view to_string(DataType t);
std::optional<DataType> parse_data_type(std::string_view name);
std::string_view to_string(ReduceOp op);  // sum, prod, min, max, avg
std::optional<ReduceOp> parse_reduce_op(std::string_view name);
std::string_view to_string(MemoryKind k);  // host, cuda

}  // namespace ringlink
