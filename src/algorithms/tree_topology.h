// The trees the tree schedules run over: who is whose parent, in real rank ids.
#pragma once

#include <vector>

namespace ringlink::algo {

// One rank's place in a tree.
struct TreeNode {
  int parent = -1;            // -1 at the root
  std::vector<int> children;  // 0, 1 or 2
};

// The shape of a rooted tree (broadcast and reduce); the cost model picks one per message.
enum class TreeShape {
  Binary,  // in-order binary tree: depth log2(n), for small and medium messages
  Chain,   // a pipeline root -> root+1 -> ...: each link carries the data once, for large ones
};

const char* to_string(TreeShape shape);

// The tree over virtual ranks 0..n-1 rooted at 0, for virtual rank v.
TreeNode binary_tree_node(int n, int v);
// Rank r's node in the tree of `shape` rooted at `root` (virtual rank = (r - root) mod n).
TreeNode rooted_tree_node(TreeShape shape, int n, int r, int root);
// The two trees of the double binary tree; tree 1 mirrors tree 0 (even n) or shifts it (odd n).
TreeNode double_tree_node(int n, int r, int which);

}  // namespace ringlink::algo
