#include "algorithms/tree_topology.h"

#include "algorithms/common.h"

namespace ringlink::algo {

const char* to_string(TreeShape shape) {
  switch (shape) {
    case TreeShape::Binary: return "binary tree";
    case TreeShape::Chain: return "pipelined chain";
  }
  return "?";
}

TreeNode binary_tree_node(int n, int v) {
  // In-order binary tree: a node's lowest set bit b gives its level. Its children are v -/+ b/2
  // and its parent is the node one level up whose range contains it. Virtual rank 0 is the root
  // and has a single child: the largest power of two below n.
  TreeNode t;
  if (n <= 1) return t;
  if (v == 0) {
    int top = 1;
    while (top * 2 < n) top *= 2;
    t.children.push_back(top);
    return t;
  }
  int b = v & -v;
  int up = (v ^ b) | (b << 1);
  t.parent = up < n ? up : (v ^ b);
  for (int half = b >> 1; half > 0; half >>= 1) {
    // Left child always exists (it is smaller than v); the right one may fall beyond n.
    if (t.children.empty()) t.children.push_back(v - half);
    if (v + half < n) {
      t.children.push_back(v + half);
      break;
    }
  }
  return t;
}

namespace {

TreeNode map_node(const TreeNode& virt, auto to_real) {
  TreeNode t;
  t.parent = virt.parent < 0 ? -1 : to_real(virt.parent);
  for (int c : virt.children) t.children.push_back(to_real(c));
  return t;
}

}  // namespace

TreeNode rooted_tree_node(TreeShape shape, int n, int r, int root) {
  int v = mod(r - root, n);
  auto to_real = [&](int x) { return mod(x + root, n); };
  if (shape == TreeShape::Chain) {
    TreeNode t;
    if (v > 0) t.parent = to_real(v - 1);
    if (v + 1 < n) t.children.push_back(to_real(v + 1));
    return t;
  }
  return map_node(binary_tree_node(n, v), to_real);
}

TreeNode double_tree_node(int n, int r, int which) {
  if (which == 0) return binary_tree_node(n, r);
  if (n % 2 == 0) {
    auto mirror = [&](int x) { return n - 1 - x; };
    return map_node(binary_tree_node(n, mirror(r)), mirror);
  }
  // Odd n: shift by one so the leaves of tree 0 (odd ranks) are interior in tree 1.
  return map_node(binary_tree_node(n, mod(r - 1, n)), [&](int x) { return mod(x + 1, n); });
}

}  // namespace ringlink::algo
