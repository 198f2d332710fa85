// Reads a fuzz input as fields: each read takes the next bytes, zero-padded past the end, so
// every input (short ones too) decodes to something.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace ringlink::fuzz {

class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  template <typename T>
  T take() {
    T v{};
    const size_t n = std::min(sizeof v, left());
    if (n) std::memcpy(&v, p_, n);
    p_ += n;
    return v;
  }
  std::span<const std::byte> rest() const { return {reinterpret_cast<const std::byte*>(p_), left()}; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// A property the decoder promises failed: a crash libFuzzer reports, with the input.
inline void require(bool ok) {
  if (!ok) std::abort();
}

// What an encoder writes back from a decoded value is the very input the decoder accepted.
inline void require_round_trip(const std::vector<std::byte>& again, std::span<const std::byte> input) {
  require(again.size() == input.size() && std::equal(again.begin(), again.end(), input.begin()));
}

}  // namespace ringlink::fuzz
