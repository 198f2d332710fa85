// Multi-rank GoogleTest programs: every rank runs the same tests in the same order, started by
// ringlink-run (or torchrun / mpirun). world() is one communicator shared by the tests.
#pragma once

#include <ringlink/ringlink.h>

#include <cstdint>
#include <vector>

namespace ringlink::testing {

Communicator& world();

// Deterministic bytes for a (sender, receiver, size, salt) message, so the receiver can check
// every byte without a second message.
inline uint8_t pattern_byte(int src, int dst, size_t i, uint64_t salt = 0) {
  uint64_t x = (static_cast<uint64_t>(src) << 40) ^ (static_cast<uint64_t>(dst) << 20) ^ (i * 0x9E3779B97F4A7C15ull) ^ salt;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<uint8_t>(x);
}

inline void fill_pattern(std::vector<uint8_t>& buf, int src, int dst, uint64_t salt = 0) {
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = pattern_byte(src, dst, i, salt);
}

// Index of the first byte that differs from the pattern, or -1.
inline int64_t first_mismatch(const std::vector<uint8_t>& buf, size_t n, int src, int dst, uint64_t salt = 0) {
  for (size_t i = 0; i < n; ++i)
    if (buf[i] != pattern_byte(src, dst, i, salt)) return static_cast<int64_t>(i);
  return -1;
}

}  // namespace ringlink::testing
