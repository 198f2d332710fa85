// Tree schedules: reduce up a tree, broadcast down it, or both (allreduce), pipelined by chunks.
// Allreduce uses a double binary tree: two complementary trees, each carrying half the data,
// so every rank is an interior node in at most one of them.
#pragma once

#include <memory>

#include "algorithms/common.h"
#include "algorithms/tree_topology.h"

namespace ringlink::algo {

enum class TreeMode { AllReduce, Reduce, Broadcast };

std::unique_ptr<detail::Operation> make_tree_allreduce(const Args& args, int rank, int size, size_t chunk_bytes,
                                                       int depth);
std::unique_ptr<detail::Operation> make_tree_reduce(const Args& args, int rank, int size, TreeShape shape,
                                                    size_t chunk_bytes, int depth);
std::unique_ptr<detail::Operation> make_tree_broadcast(const Args& args, int rank, int size, TreeShape shape,
                                                       size_t chunk_bytes, int depth);

}  // namespace ringlink::algo
