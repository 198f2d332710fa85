// Tree shapes and the cost model's choices.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "algorithms/select.h"
#include "algorithms/tree_topology.h"

using namespace ringlink;
using namespace ringlink::algo;

namespace {

// Checks that nodes form one tree: parent/child links agree, one root, everyone reachable.
void expect_valid_tree(int n, const std::function<TreeNode(int)>& node, int* depth_out = nullptr) {
  int roots = 0, root = -1;
  for (int r = 0; r < n; ++r) {
    TreeNode t = node(r);
    EXPECT_LE(t.children.size(), 2u);
    if (t.parent < 0) {
      ++roots;
      root = r;
    } else {
      TreeNode p = node(t.parent);
      EXPECT_EQ(std::count(p.children.begin(), p.children.end(), r), 1) << "n=" << n << " rank " << r;
    }
    for (int c : t.children) EXPECT_EQ(node(c).parent, r) << "n=" << n << " rank " << r;
  }
  ASSERT_EQ(roots, 1) << "n=" << n;
  // Reachability and depth from the root.
  std::set<int> seen;
  int depth = 0;
  std::function<void(int, int)> walk = [&](int r, int d) {
    EXPECT_TRUE(seen.insert(r).second) << "rank " << r << " reached twice";
    depth = std::max(depth, d);
    for (int c : node(r).children) walk(c, d + 1);
  };
  walk(root, 0);
  EXPECT_EQ(static_cast<int>(seen.size()), n);
  if (depth_out) *depth_out = depth;
}

TEST(Trees, BinaryTreeIsValidAndShallow) {
  for (int n = 1; n <= 70; ++n) {
    int depth = 0;
    expect_valid_tree(n, [&](int r) { return binary_tree_node(n, r); }, &depth);
    int log2 = 0;
    while ((1 << log2) < n) ++log2;
    EXPECT_LE(depth, log2 + 1) << "n=" << n;
  }
}

TEST(Trees, RootedShapesAreValidForEveryRoot) {
  for (int n : {1, 2, 3, 5, 8, 13}) {
    for (int root = 0; root < n; ++root) {
      for (TreeShape s : {TreeShape::Binary, TreeShape::Chain}) {
        expect_valid_tree(n, [&](int r) { return rooted_tree_node(s, n, r, root); });
        EXPECT_LT(rooted_tree_node(s, n, root, root).parent, 0) << "root " << root << " must be the root";
      }
    }
  }
}

TEST(Trees, DoubleTreeHalvesAreComplementary) {
  for (int n = 2; n <= 40; ++n) {
    for (int which = 0; which < 2; ++which) expect_valid_tree(n, [&](int r) { return double_tree_node(n, r, which); });
    // No rank is interior (has children) in both trees.
    for (int r = 0; r < n; ++r) {
      bool inner0 = !double_tree_node(n, r, 0).children.empty();
      bool inner1 = !double_tree_node(n, r, 1).children.empty();
      if (n % 2 == 0) {
        EXPECT_FALSE(inner0 && inner1) << "n=" << n << " rank " << r;
      }
    }
  }
}

TEST(CostModel, TinyMessagesUseRecursiveDoublingAndLargeOnesTheRing) {
  LinkModel tcp{12.0, 2.0, 10.0};
  for (int n : {2, 3, 4, 5, 8}) {
    EXPECT_EQ(choose_allreduce(8, n, Algorithm::Auto, true, tcp, 512 << 10).algo, AllreduceAlgo::RecursiveDoubling)
        << n;
    EXPECT_EQ(choose_allreduce(size_t{256} << 20, n, Algorithm::Auto, false, tcp, 512 << 10).algo, AllreduceAlgo::Ring)
        << n;
  }
}

TEST(CostModel, RecursiveDoublingOnlyForSmallMessages) {
  // A very slow link would make the model prefer recursive doubling's few rounds at any size;
  // above the measured limit it is not a candidate.
  LinkModel slow_link{1000.0, 10.0, 100.0, 64 * 1024};
  auto small = choose_allreduce(64 * 1024, 4, Algorithm::Auto, true, slow_link, 512 << 10);
  EXPECT_EQ(small.algo, AllreduceAlgo::RecursiveDoubling);
  auto larger = choose_allreduce(64 * 1024 + 4, 4, Algorithm::Auto, true, slow_link, 512 << 10);
  EXPECT_NE(larger.algo, AllreduceAlgo::RecursiveDoubling);
  EXPECT_LT(larger.rd_us, 0) << "not estimated above the limit";
}

// The choices the model makes with this VM's measured constants (docs/collectives.md).
TEST(CostModel, MeasuredConstantsOnLoopback) {
  LinkModel tcp{4.5, 2.9, 10.0, 64 * 1024}, shm{1.0, 20.0, 10.0, 16 * 1024};
  for (const LinkModel& m : {tcp, shm}) {
    for (int n : {2, 3, 4}) {
      EXPECT_EQ(choose_allreduce(8, n, Algorithm::Auto, true, m, 512 << 10).algo, AllreduceAlgo::RecursiveDoubling);
      EXPECT_EQ(choose_allreduce(size_t{64} << 20, n, Algorithm::Auto, false, m, 512 << 10).algo, AllreduceAlgo::Ring);
    }
  }
  // Two ranks, 512 KiB in one slot: the ring (each rank reduces half) beats exchanging it all.
  EXPECT_EQ(choose_allreduce(512 << 10, 2, Algorithm::Auto, true, shm, 512 << 10).algo, AllreduceAlgo::Ring);
  // 32 KiB: still recursive doubling over TCP, no longer over shared memory.
  EXPECT_EQ(choose_allreduce(32 << 10, 2, Algorithm::Auto, true, tcp, 512 << 10).algo, AllreduceAlgo::RecursiveDoubling);
  EXPECT_NE(choose_allreduce(32 << 10, 2, Algorithm::Auto, true, shm, 512 << 10).algo, AllreduceAlgo::RecursiveDoubling);
}

TEST(CostModel, MediumMessagesAtManyRanksUseTheTree) {
  LinkModel ib{3.0, 12.0, 10.0};
  auto c = choose_allreduce(size_t{1} << 20, 64, Algorithm::Auto, false, ib, 512 << 10);
  EXPECT_EQ(c.algo, AllreduceAlgo::Tree) << "ring " << c.ring_us << " us, tree " << c.tree_us << " us";
}

TEST(CostModel, ForcedAlgorithmWins) {
  LinkModel m;
  EXPECT_EQ(choose_allreduce(8, 4, Algorithm::Tree, true, m, 512 << 10).algo, AllreduceAlgo::Tree);
  EXPECT_EQ(choose_allreduce(8, 4, Algorithm::Ring, true, m, 512 << 10).algo, AllreduceAlgo::Ring);
  EXPECT_EQ(choose_rooted_shape(8, 8, Algorithm::Ring, m, 512 << 10), TreeShape::Chain);
  EXPECT_EQ(choose_rooted_shape(size_t{1} << 30, 8, Algorithm::Tree, m, 512 << 10), TreeShape::Binary);
}

TEST(CostModel, RootedShapes) {
  LinkModel m{12.0, 2.0, 10.0};
  EXPECT_EQ(choose_rooted_shape(8, 8, Algorithm::Auto, m, 512 << 10), TreeShape::Binary);
  EXPECT_EQ(choose_rooted_shape(size_t{256} << 20, 8, Algorithm::Auto, m, 512 << 10), TreeShape::Chain);
}

}  // namespace
