// The random stream of one training sample, seeded from (seed, epoch,
// position) so a sample is the same whichever worker thread builds it.
#pragma once

#include <cstdint>
#include <random>

namespace yolo {

class SampleRng {
 public:
  explicit SampleRng(uint64_t seed) : gen_(seed) {}
  double uniform(double a = 0.0, double b = 1.0) { return a + (b - a) * ((gen_() >> 11) * 0x1.0p-53); }
  size_t index(size_t n) { return static_cast<size_t>(uniform() * n) % n; }
  // Beta(a, b) as X / (X + Y) of two gamma draws (numpy's random.beta for a, b > 1).
  double beta(double a, double b) {
    const double x = std::gamma_distribution<double>(a, 1.0)(gen_);
    const double y = std::gamma_distribution<double>(b, 1.0)(gen_);
    return x / (x + y);
  }

 private:
  std::mt19937_64 gen_;
};

// splitmix64 over three inputs: nearby (epoch, position) pairs give unrelated streams.
inline uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) {
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(a) ^ b) ^ c);
}

}  // namespace yolo
