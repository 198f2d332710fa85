// The order in which an epoch visits a dataset, and one rank's share of it. As PyTorch's
// DistributedSampler: every rank draws the same permutation (same seed and epoch), pads it
// with its own first entries to a multiple of the world size, and rank r takes positions
// r, r + N, r + 2N, ... So at local batch k of B/N images the ranks together hold positions
// [kB, (k+1)B): exactly the images of a single process's batch k of B.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace yolo {

// 0..n-1, shuffled from (seed, epoch) when `shuffle`.
std::vector<size_t> epoch_permutation(size_t n, uint64_t seed, int epoch, bool shuffle);

struct ShardOrder {
  std::vector<size_t> indices;    // dataset indices, in the order this rank visits them
  std::vector<size_t> positions;  // each one's position in the padded global order (keys its augmentation)
};

// `pad`: repeat the permutation's head so every rank gets ceil(n / world) entries (training);
// otherwise ranks hold ceil or floor of n / world and nothing is seen twice (validation).
ShardOrder shard_order(const std::vector<size_t>& permutation, int rank, int world, bool pad);

}  // namespace yolo
