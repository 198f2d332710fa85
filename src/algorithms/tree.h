// Tree schedules: reduce up a tree, broadcast down it, or both (allreduce), pipelined by chunks.
// Allreduce uses a double binary tree: two complementary trees, each carrying half the data,
// so every rank is an interior node in at most one of them.
#pragma once

#include <memory>
#include <vector>

#include "algorithms/common.h"

namespace ringlink::algo {

// One rank's place in a tree, in real rank ids.
struct TreeNode {
  int parent = -1;            // -1 at the root
  std::vector<int> children;  // 0, 1 or 2
};

enum class TreeShape {
  Binary,  // in-order binary tree: depth log2(n), for small and medium messages
  Chain,   // a pipeline root -> root+1 -> ...: each link carries the data once, for large ones
};

// The tree over virtual ranks 0..n-1 rooted at 0, for virtual rank v.
TreeNode binary_tree_node(int n, int v);
// Rank r's node in the tree of `shape` rooted at `root` (virtual rank = (r - root) mod n).
TreeNode rooted_tree_node(TreeShape shape, int n, int r, int root);
// The two trees of the double binary tree; tree 1 mirrors tree 0 (even n) or shifts it (odd n).
TreeNode double_tree_node(int n, int r, int which);

enum class TreeMode { AllReduce, Reduce, Broadcast };

std::unique_ptr<detail::Operation> make_tree_allreduce(const Args& args, int rank, int size, size_t chunk_bytes,
                                                       int depth);
std::unique_ptr<detail::Operation> make_tree_reduce(const Args& args, int rank, int size, TreeShape shape,
                                                    size_t chunk_bytes, int depth);
std::unique_ptr<detail::Operation> make_tree_broadcast(const Args& args, int rank, int size, TreeShape shape,
                                                       size_t chunk_bytes, int depth);

}  // namespace ringlink::algo
