// Compressed wire formats: float32 values carried as bf16 or fp16 (WireDtype) and reduced in
// float32. The conversions round to nearest even (wire_kernels.h); the fused forms below are
// what a schedule's hop does, in one pass over L1-sized blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ringlink/options.h"
#include "ringlink/types.h"

namespace ringlink::reduce {

// Bytes of one element on the wire (2; 4 for Off, the float32 itself).
constexpr size_t wire_elem_bytes(WireDtype w) { return w == WireDtype::Off ? 4 : 2; }

// dst[i] = the 16-bit value nearest src[i] (ties to even). `w` is BF16 or FP16.
void encode(uint16_t* dst, const float* src, size_t count, WireDtype w);
// dst[i] = src[i] as float32 (exact).
void decode(float* dst, const uint16_t* src, size_t count, WireDtype w);

// dst[i] = local[i] (op) decode(wire[i]), in float32. dst may be `local`.
void combine_from_wire(float* dst, const float* local, const uint16_t* wire, size_t count, WireDtype w, ReduceOp op);
// wire[i] = encode(local[i] (op) decode(wire[i])): a hop that forwards its partial result.
void combine_into_wire(uint16_t* wire, const float* local, size_t count, WireDtype w, ReduceOp op);
// The last hop of a chunk's reduction, in one pass: r = local[i] (op) decode(wire[i]), divided
// by `divisor` (avg; 1 otherwise); wire[i] = encode(r), and dst[i] = decode(wire[i]), the
// value every rank will hold. dst may be `local`.
void complete_from_wire(float* dst, const float* local, uint16_t* wire, size_t count, WireDtype w, ReduceOp op,
                        int divisor);
// p[i] = decode(encode(p[i])): the value that goes on the wire, kept by the rank that sends it.
void round_through_wire(float* p, size_t count, WireDtype w);

}  // namespace ringlink::reduce
