#include "ddp/sampler.h"

#include <numeric>
#include <stdexcept>
#include <string>

#include "data/augment.h"

namespace yolo {

std::vector<size_t> epoch_permutation(size_t n, uint64_t seed, int epoch, bool shuffle) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    SampleRng rng(mix_seed(seed, static_cast<uint64_t>(epoch), 0xA11CEull));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.index(i)]);
  }
  return order;
}

ShardOrder shard_order(const std::vector<size_t>& permutation, int rank, int world, bool pad) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("shard_order: rank " + std::to_string(rank) + " of " + std::to_string(world));
  const size_t n = permutation.size(), w = static_cast<size_t>(world);
  const size_t total = pad ? (n + w - 1) / w * w : n;
  ShardOrder s;
  for (size_t pos = static_cast<size_t>(rank); pos < total; pos += w) {
    s.indices.push_back(permutation[pos % n]);  // pos >= n: the padding wraps to the start
    s.positions.push_back(pos);
  }
  return s;
}

}  // namespace yolo
