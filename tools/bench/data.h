// Deterministic per-rank data and its verification. Element i of rank r's input depends only on
// (seed, r, i, type, op, nranks), so every rank computes the expected result of any collective
// locally. Values are small integers (powers of two and -1 for prod) so that sums and products
// are exact in every type within the ranges used; a tolerance covers reduction orders that
// round (many ranks in half or bfloat16, avg).
#pragma once

#include <cstddef>
#include <cstdint>

#include <ringlink/types.h>

#include "bench/bench.h"
#include "reduce/reduce.h"

namespace ringlink::bench {

// The library's host conversions for the 16-bit float types (round to nearest even).
using reduce::bfloat16_to_float;
using reduce::float_to_bfloat16;
using reduce::float_to_half;
using reduce::half_to_float;

// Writes input values for elements [first, first + count) of `rank` into dst[0..count).
void fill_input(void* dst, size_t count, size_t first, DataType type, ReduceOp op, int nranks, int rank,
                uint64_t seed);

// Fills `bytes` with a pattern no correct result contains in practice (so a result that was
// never written is caught).
void poison(void* dst, size_t bytes);

// Reads element i of a buffer of `type` as a double; store_value writes one, rounding (floats)
// or wrapping (integers) as a conversion to the type does.
double load_value(const void* buf, size_t i, DataType type);
void store_value(void* buf, size_t i, DataType type, double v);

// Number of wrong elements in this rank's result of collective `c`, where `result` holds the
// elements this rank is responsible for (see the driver). nranks, rank, root, count as in the
// call; `count` in nccl conventions (Layout::param_count).
int64_t count_wrong(Collective c, const void* result, size_t count, DataType type, ReduceOp op, int nranks,
                    int rank, int root, uint64_t seed);

// For p2p: the message is what fill_input(type, Sum, 2, sender, seed) wrote.
int64_t count_wrong_message(const void* result, size_t count, DataType type, int sender, uint64_t seed);

}  // namespace ringlink::bench
