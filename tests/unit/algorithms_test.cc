// Tree shapes, the cost model's choices, and the chain pipeline's bookkeeping (over a fake
// connection whose requests the test completes).
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "algorithms/chain_pipeline.h"
#include "algorithms/select.h"
#include "algorithms/signature.h"
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

// ---- ChainPipeline ---------------------------------------------------------------------------

// Requests that complete when the test says so.
struct FakeMessage {
  bool send;
  int peer;
  Tag tag;
  size_t bytes;
  const void* buf;
  bool complete = false;
};

class FakeRequest final : public Request {
 public:
  explicit FakeRequest(std::shared_ptr<FakeMessage> m) : m_(std::move(m)) {}
  bool test() override { return m_->complete; }
  size_t bytes() const override { return m_->bytes; }

 private:
  std::shared_ptr<FakeMessage> m_;
};

class FakeConnection final : public Connection {
 public:
  FakeConnection(int peer, std::vector<std::shared_ptr<FakeMessage>>& log) : Connection(peer), log_(log) {}
  std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion*, Tag tag) override {
    return post(true, buf, bytes, tag);
  }
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion*, Tag tag) override {
    return post(false, buf, bytes, tag);
  }

 private:
  std::unique_ptr<Request> post(bool send, const void* buf, size_t bytes, Tag tag) {
    log_.push_back(std::make_shared<FakeMessage>(FakeMessage{send, peer(), tag, bytes, buf}));
    return std::make_unique<FakeRequest>(log_.back());
  }
  std::vector<std::shared_ptr<FakeMessage>>& log_;
};

// Rank 0 of three, with fake connections to ranks 1 and 2 and a pool of `slots` slots.
struct PipelineBench {
  explicit PipelineBench(int slots)
      : memory(static_cast<size_t>(slots) * kSlotBytes), pool(memory.data(), kSlotBytes, slots, nullptr) {
    connections.resize(3);
    for (int p = 1; p < 3; ++p) connections[static_cast<size_t>(p)] = std::make_unique<FakeConnection>(p, log);
  }
  detail::OpContext context() { return detail::OpContext(connections, kTagBase, pool); }
  size_t outstanding(bool send) const {
    size_t n = 0;
    for (auto& m : log) n += m->send == send && !m->complete;
    return n;
  }
  void complete_all(bool send) {
    for (auto& m : log)
      if (m->send == send) m->complete = true;
  }

  static constexpr size_t kSlotBytes = 64;
  static constexpr Tag kTagBase = Tag{7} << 20;
  std::vector<std::byte> memory;
  StagingPool pool;
  std::vector<std::shared_ptr<FakeMessage>> log;
  std::vector<std::unique_ptr<Connection>> connections;
};

// Each chain receives 4 float32 from rank 1 into a slot, adds its local values and sends the
// sum from the slot to rank 2.
TEST(ChainPipeline, BoundsActiveChainsPerGroupAndReturnsEverySlot) {
  PipelineBench bench(16);
  const size_t kCount = 4;
  std::vector<float> local(kCount, 1.0f);
  ChainPipeline pipe(DataType::Float32, ReduceOp::Sum, 3);
  pipe.start(bench.pool, {10, 10}, 4, 2);  // depth 4 fits: 16 slots / (2 groups x 2 slots)
  std::map<int, std::set<size_t>> started;  // group -> chains stepped
  auto step = [&](ChainPipeline::Chain& ch) {
    started[ch.group()].insert(ch.index());
    const Tag tag = static_cast<Tag>(ch.group()) * 100 + ch.index();
    if (ch.stage == 0) {
      if (!pipe.receive_to_combine(ch, 1, tag, kCount)) return false;
      ch.stage = 1;
      return true;
    }
    if (!pipe.arrived(ch)) return false;
    ChunkBuffer got = pipe.take(ch)[0];
    pipe.combine(got.data, reinterpret_cast<const std::byte*>(local.data()), got, kCount);
    pipe.send(ch, 2, tag, got, kCount);
    pipe.close(ch);
    return true;
  };
  const detail::OpContext ctx = bench.context();

  EXPECT_EQ(pipe.advance(ctx, step), detail::Progress::Moved);
  EXPECT_EQ(bench.outstanding(false), 8u) << "4 receives per group";
  EXPECT_EQ(started[0].size(), 4u);
  EXPECT_EQ(started[1].size(), 4u);
  EXPECT_EQ(bench.pool.available(), 8);
  for (auto& m : bench.log) {
    EXPECT_EQ(m->bytes, kCount * sizeof(float));
    EXPECT_GE(m->tag, PipelineBench::kTagBase) << "the pipeline adds the operation's tag base";
  }
  EXPECT_EQ(pipe.advance(ctx, step), detail::Progress::Waiting) << "nothing arrived";
  EXPECT_EQ(pipe.waiting_on(), 1);

  // The data arrive: the chains combine in their slots and send; slots stay with the sends.
  for (auto& m : bench.log) {
    if (m->send) continue;
    auto* slot = static_cast<float*>(const_cast<void*>(m->buf));
    for (size_t i = 0; i < kCount; ++i) slot[i] = 2.0f;
  }
  bench.complete_all(false);
  EXPECT_EQ(pipe.advance(ctx, step), detail::Progress::Moved);
  EXPECT_EQ(bench.outstanding(true), 8u);
  EXPECT_EQ(bench.outstanding(false), 0u) << "no new chain starts while the sends hold their slots";
  for (auto& m : bench.log) {
    if (m->send) {
      EXPECT_EQ(static_cast<const float*>(m->buf)[0], 3.0f) << "local 1 + received 2";
    }
  }

  // Sends out: their slots come back and the next chains start, until all 20 are done.
  detail::Progress p = detail::Progress::Moved;
  for (int round = 0; round < 10 && p != detail::Progress::Done; ++round) {
    bench.complete_all(true);
    bench.complete_all(false);
    p = pipe.advance(ctx, step);
  }
  EXPECT_EQ(p, detail::Progress::Done);
  EXPECT_EQ(started[0].size(), 10u);
  EXPECT_EQ(started[1].size(), 10u);
  EXPECT_EQ(bench.pool.available(), 16) << "every slot returned";
}

TEST(ChainPipeline, SlotsForAllPeersOrNone) {
  PipelineBench bench(3);
  ChainPipeline pipe(DataType::Int32, ReduceOp::Max, 3);
  pipe.start(bench.pool, {2}, 2, 1);
  const int peers[] = {1, 2};
  int refused = 0;
  auto step = [&](ChainPipeline::Chain& ch) {
    if (ch.stage != 0) return false;
    if (!pipe.receive_to_combine(ch, peers, 0, 1)) {
      ++refused;
      return false;
    }
    ch.stage = 1;
    return true;
  };
  const detail::OpContext ctx = bench.context();
  EXPECT_EQ(pipe.advance(ctx, step), detail::Progress::Moved);
  EXPECT_EQ(bench.log.size(), 2u) << "one chain got two slots; the other posted nothing";
  EXPECT_GT(refused, 0);
  EXPECT_EQ(bench.pool.available(), 1);
}

TEST(ChainPipeline, EmptyChunksTakeNoSlotAndPostNoMessage) {
  PipelineBench bench(2);
  ChainPipeline pipe(DataType::Float32, ReduceOp::Sum, 3);
  pipe.start(bench.pool, {1}, 1, 1);
  auto step = [&](ChainPipeline::Chain& ch) {
    if (ch.stage == 0) {
      EXPECT_TRUE(pipe.receive_to_combine(ch, 1, 0, 0));
      ch.stage = 1;
    }
    if (!pipe.arrived(ch)) return true;
    ChunkBuffer got = pipe.take(ch)[0];
    EXPECT_LT(got.slot, 0);
    pipe.send(ch, 2, 1, got, 0);
    pipe.close(ch);
    return true;
  };
  EXPECT_EQ(pipe.advance(bench.context(), step), detail::Progress::Done);
  EXPECT_TRUE(bench.log.empty());
  EXPECT_EQ(bench.pool.available(), 2);
}

}  // namespace

// ---- Collective signatures (algorithms/signature.h)

namespace ringlink::algo {
namespace {

Signature sample_signature() {
  Signature s;
  s.seq = 41;
  s.kind = CollectiveKind::Reduce;
  s.count = 1000;
  s.type = DataType::BFloat16;
  s.op = ReduceOp::Max;
  s.root = 2;
  s.wire = WireDtype::FP16;
  return s;
}

TEST(Signature, RoundTripsEveryField) {
  Signature s = sample_signature();
  SignatureWire w = encode(s);
  std::optional<Signature> back = decode(w);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
  for (CollectiveKind k : {CollectiveKind::Allreduce, CollectiveKind::Barrier}) {
    s.kind = k;
    EXPECT_EQ(decode(encode(s)), s);
  }
}

TEST(Signature, EachFieldChangesTheWire) {
  const SignatureWire base = encode(sample_signature());
  auto differs = [&](auto change) {
    Signature s = sample_signature();
    change(s);
    return encode(s) != base;
  };
  EXPECT_TRUE(differs([](Signature& s) { s.seq = 42; }));
  EXPECT_TRUE(differs([](Signature& s) { s.kind = CollectiveKind::Broadcast; }));
  EXPECT_TRUE(differs([](Signature& s) { s.count = 1001; }));
  EXPECT_TRUE(differs([](Signature& s) { s.type = DataType::Float16; }));
  EXPECT_TRUE(differs([](Signature& s) { s.op = ReduceOp::Min; }));
  EXPECT_TRUE(differs([](Signature& s) { s.root = 0; }));
  EXPECT_TRUE(differs([](Signature& s) { s.wire = WireDtype::BF16; }));
  EXPECT_TRUE(differs([](Signature& s) { s.wire = WireDtype::Off; }));
}

TEST(Signature, RefusesWhatIsNotASignature) {
  SignatureWire w = encode(sample_signature());
  EXPECT_FALSE(decode(std::span<const std::byte>(w.data(), w.size() - 1)));  // short
  SignatureWire bad = w;
  bad[7] = std::byte{0};  // magic
  EXPECT_FALSE(decode(bad));
  bad = w;
  bad[3] = std::byte{3};  // version
  EXPECT_FALSE(decode(bad));
  bad = w;
  bad[2] = std::byte{0x7f};  // kind out of range
  EXPECT_FALSE(decode(bad));
  bad = w;
  bad[1] = std::byte{0x40};  // type out of range
  EXPECT_FALSE(decode(bad));
  bad = w;
  bad[0] = std::byte{0x40};  // op out of range
  EXPECT_FALSE(decode(bad));
  bad = w;
  bad[28] = std::byte{3};  // wire format out of range
  EXPECT_FALSE(decode(bad));
  bad = w;
  bad[29] = std::byte{1};  // reserved bits
  EXPECT_FALSE(decode(bad));
  SignatureWire zeros{};
  EXPECT_FALSE(decode(zeros));
}

TEST(Signature, DescribesTheCallAsWritten) {
  Signature s;
  s.count = 1000;
  EXPECT_EQ(describe(s), "allreduce(count=1000, float32, sum)");
  s.wire = WireDtype::BF16;
  EXPECT_EQ(describe(s), "allreduce(count=1000, float32, sum, wire=bf16)");
  s.wire = WireDtype::Off;
  s.type = DataType::Int32;
  EXPECT_EQ(describe(s), "allreduce(count=1000, int32, sum)");
  s.kind = CollectiveKind::Broadcast;
  s.root = 1;
  EXPECT_EQ(describe(s), "broadcast(count=1000, int32, root=1)");
  s.kind = CollectiveKind::Allgather;
  EXPECT_EQ(describe(s), "allgather(count=1000, int32)");
  s.kind = CollectiveKind::Barrier;
  EXPECT_EQ(describe(s), "barrier()");
}

TEST(Signature, MismatchMessageNamesBothRanksLowerFirst) {
  Signature mine;
  mine.count = 1000;
  mine.seq = 3;
  std::string theirs = "allreduce(count=1000, int32, sum)";
  EXPECT_EQ(mismatch_message(1, mine, 0, theirs),
            "rank 0 called allreduce(count=1000, int32, sum); rank 1 called allreduce(count=1000, float32, sum) "
            "(collective #3 on this communicator)");
  EXPECT_EQ(mismatch_message(0, mine, 1, theirs),
            "rank 0 called allreduce(count=1000, float32, sum); rank 1 called allreduce(count=1000, int32, sum) "
            "(collective #3 on this communicator)");
}

}  // namespace
}  // namespace ringlink::algo
