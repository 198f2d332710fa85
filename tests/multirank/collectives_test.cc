// Every collective x type x op x algorithm, at several counts, in and out of place. Each rank
// checks its result against a reference computed locally, and ranks compare hashes of results
// that must be bitwise identical everywhere.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "multirank/collective_kind.h"
#include "multirank/reference.h"
#include "multirank/world.h"

using namespace ringlink;
using namespace ringlink::testing;

namespace {

bool reduces(Coll c) { return c == Coll::AllReduce || c == Coll::ReduceScatter || c == Coll::Reduce; }
// Results that every rank holds in full and must hold identically.
bool same_everywhere(Coll c) { return c == Coll::AllReduce || c == Coll::AllGather || c == Coll::Broadcast; }

// A communicator per forced algorithm, created the first time a test needs it (on every rank
// in the same order, since all ranks run the same tests).
Communicator& comm(Algorithm a) {
  static std::map<Algorithm, std::unique_ptr<Communicator>> comms;
  if (a == Algorithm::Auto) return world();
  auto& c = comms[a];
  if (!c) {
    Options o = Options::from_environment();
    o.algorithm = a;
    c = std::make_unique<Communicator>(o);
  }
  return *c;
}

uint64_t next_salt() {
  static uint64_t salt = 1;
  return salt++;
}

// Every rank's input values for one (collective, type, count), computed once and shared by
// all ops and both in-place variants. values[r * count + i]:
//   allreduce, reduce, broadcast: rank r's element i;
//   reduce_scatter: rank r's element (me * count + i), i.e. what reduces into my block;
//   allgather (r = 0 only, n * count values): element i of the gathered vector.
struct Inputs {
  Inputs(Coll coll, DataType t, int n, int me, size_t elements) : salt(next_salt()), count(elements) {
    if (coll == Coll::AllGather) {
      values.resize(n * count);
      for (size_t i = 0; i < n * count; ++i) values[i] = input_value(t, static_cast<int>(i / count), i, salt);
      return;
    }
    size_t base = coll == Coll::ReduceScatter ? me * count : 0;
    values.resize(n * count);
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < count; ++i) values[r * count + i] = input_value(t, r, base + i, salt);
  }
  uint64_t salt;
  size_t count;
  std::vector<double> values;
};

struct Case {
  Coll coll;
  DataType type;
  ReduceOp op;
  size_t count;  // per-rank block for reduce_scatter / allgather, whole vector otherwise
  bool in_place;
  int root;
};

std::string describe(const Case& k, Algorithm a) {
  return fmt::format("{} {} {} count={} {} root={} algo={}", name(k.coll), to_string(k.type), to_string(k.op), k.count,
                     k.in_place ? "in-place" : "out-of-place", k.root, to_string(a));
}

// Runs one case on `c` and checks it, reporting the first wrong element.
void run_case(Communicator& c, Algorithm algo, const Case& k, const Inputs& inputs) {
  const int me = c.rank(), n = c.size();
  const size_t es = size_of(k.type);
  const uint64_t salt = inputs.salt;
  const double* v = inputs.values.data();
  const size_t in_count = k.coll == Coll::ReduceScatter ? k.count * n : k.count;
  const size_t out_count = k.coll == Coll::AllGather ? k.count * n : k.count;

  std::vector<std::byte> in(in_count * es + 1), out(out_count * es + 1);
  // Garbage in the output: a collective that forgets an element is caught.
  std::memset(out.data(), 0xA5, out.size());
  std::byte* send = in.data();
  std::byte* recv = out.data();
  if (k.coll == Coll::AllGather) {
    fill_input(k.type, in.data(), k.count, me, salt, me * k.count);
  } else if (k.coll != Coll::Broadcast || me == k.root) {
    fill_input(k.type, in.data(), in_count, me, salt);
  }
  if (k.in_place) {
    switch (k.coll) {
      case Coll::AllGather:
        std::memcpy(out.data() + me * k.count * es, in.data(), k.count * es);
        send = out.data() + me * k.count * es;
        break;
      case Coll::ReduceScatter:
        recv = in.data() + me * k.count * es;
        break;
      default:
        if (k.coll != Coll::Broadcast || me == k.root) std::memcpy(out.data(), in.data(), in_count * es);
        send = out.data();
    }
  }
  const std::byte* result = recv;
  switch (k.coll) {
    case Coll::AllReduce: c.allreduce(send, recv, k.count, k.type, k.op); break;
    case Coll::ReduceScatter: c.reduce_scatter(send, recv, k.count, k.type, k.op); break;
    case Coll::AllGather: c.allgather(send, recv, k.count, k.type); break;
    case Coll::Broadcast: c.broadcast(me == k.root ? send : nullptr, recv, k.count, k.type, k.root); break;
    case Coll::Reduce:
      // Out of place, non-roots pass no receive buffer at all.
      c.reduce(send, (k.in_place || me == k.root) ? recv : nullptr, k.count, k.type, k.op, k.root);
      break;
  }

  // Check against the reference.
  size_t wrong = 0, first_wrong = SIZE_MAX;
  double got_first = 0, want_first = 0;
  auto check = [&](size_t i, double got, Expected want) {
    bool ok = want.tolerance == 0 ? got == want.value : std::fabs(got - want.value) <= want.tolerance;
    if (!ok && std::isnan(want.value)) ok = std::isnan(got);
    if (!ok) {
      if (wrong++ == 0) {
        first_wrong = i;
        got_first = got;
        want_first = want.value;
      }
    }
  };
  bool checks_here = k.coll != Coll::Reduce || me == k.root;
  if (checks_here) {
    for (size_t i = 0; i < out_count; ++i) {
      double got = load(k.type, result, i);
      switch (k.coll) {
        case Coll::AllReduce:
        case Coll::Reduce:
        case Coll::ReduceScatter: check(i, got, reference(k.type, k.op, n, v + i, k.count)); break;
        case Coll::AllGather: check(i, got, {v[i], 0}); break;
        case Coll::Broadcast: check(i, got, {v[k.root * k.count + i], 0}); break;
      }
    }
  }
  EXPECT_EQ(wrong, 0u) << describe(k, algo) << " on rank " << me << ": first wrong element " << first_wrong
                       << " = " << got_first << ", expected " << want_first;
  // The byte after the result must be untouched.
  if ((k.coll != Coll::ReduceScatter || !k.in_place) && checks_here) {
    EXPECT_EQ(out[out_count * es], std::byte{0xA5}) << describe(k, algo) << ": wrote past the end";
  }
  if (same_everywhere(k.coll) && n > 1) {
    uint64_t h = fnv1a(result, out_count * es);
    std::vector<uint64_t> all(n);
    world().allgather(&h, all.data(), 1, DataType::Int64);
    for (int r = 0; r < n; ++r)
      EXPECT_EQ(all[r], h) << describe(k, algo) << ": rank " << r << "'s result differs bitwise from rank " << me
                           << "'s";
  }
}

struct Param {
  Coll coll;
  Algorithm algo;
};

class Collectives : public ::testing::TestWithParam<Param> {};

TEST_P(Collectives, EveryTypeOpAndCount) {
  const Param p = GetParam();
  Communicator& c = comm(p.algo);
  const int n = c.size();
  std::vector<ReduceOp> ops(std::begin(kAllReduceOps), std::end(kAllReduceOps));
  if (!reduces(p.coll)) ops = {ReduceOp::Sum};
  int root = 0;
  for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1023}, (size_t{1} << 20) + 3}) {
    for (DataType t : kAllDataTypes) {
      const Inputs inputs(p.coll, t, n, c.rank(), count);
      for (ReduceOp op : ops) {
        // Large counts: out of place only, except allreduce which runs both.
        bool both = count < 4096 || p.coll == Coll::AllReduce;
        for (bool in_place : {false, true}) {
          if (in_place && !both) continue;
          Case k{p.coll, t, op, count, in_place, root};
          // Every rank runs every case even after a failure, so the ranks stay in step.
          run_case(c, p.algo, k, inputs);
          root = (root + 1) % n;
        }
      }
    }
  }
}

std::vector<Param> params() {
  std::vector<Param> v;
  for (Algorithm a : {Algorithm::Auto, Algorithm::Ring, Algorithm::Tree}) {
    v.push_back({Coll::AllReduce, a});
    v.push_back({Coll::Broadcast, a});
    v.push_back({Coll::Reduce, a});
  }
  // reduce_scatter and allgather always use the ring.
  v.push_back({Coll::ReduceScatter, Algorithm::Auto});
  v.push_back({Coll::AllGather, Algorithm::Auto});
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, Collectives, ::testing::ValuesIn(params()), [](const auto& test) {
  return std::string(name(test.param.coll)) + "_" + std::string(to_string(test.param.algo));
});

// 2^26 float32 elements with values whose sums are exact in any order, so the check is exact.
TEST(CollectivesLarge, Float32TwoToThe26) {
  constexpr size_t kCount = size_t{1} << 26;
  const int n = world().size(), me = world().rank();
  auto value = [](int rank, size_t i) { return static_cast<float>(i % 4096) / 4096.0f + static_cast<float>(rank); };
  const float rank_sum = static_cast<float>(n * (n - 1) / 2);
  std::vector<float> a(kCount), b(kCount);
  for (Algorithm algo : {Algorithm::Ring, Algorithm::Tree}) {
    Communicator& c = comm(algo);
    for (size_t i = 0; i < kCount; ++i) a[i] = value(me, i);
    c.allreduce(a.data(), b.data(), kCount, DataType::Float32, ReduceOp::Sum);
    size_t wrong = 0;
    for (size_t i = 0; i < kCount; ++i) wrong += b[i] != static_cast<float>(n) * static_cast<float>(i % 4096) / 4096.0f + rank_sum;
    EXPECT_EQ(wrong, 0u) << "allreduce 2^26 float32, " << to_string(algo);

    const int root = n - 1;
    c.broadcast(a.data(), b.data(), kCount, DataType::Float32, root);
    wrong = 0;
    for (size_t i = 0; i < kCount; ++i) wrong += b[i] != value(root, i);
    EXPECT_EQ(wrong, 0u) << "broadcast 2^26 float32, " << to_string(algo);

    for (size_t i = 0; i < kCount; ++i) a[i] = value(me, i);
    std::fill(b.begin(), b.end(), -1.0f);
    c.reduce(a.data(), b.data(), kCount, DataType::Float32, ReduceOp::Sum, root);
    if (me == root) {
      wrong = 0;
      for (size_t i = 0; i < kCount; ++i) wrong += b[i] != static_cast<float>(n) * static_cast<float>(i % 4096) / 4096.0f + rank_sum;
      EXPECT_EQ(wrong, 0u) << "reduce 2^26 float32, " << to_string(algo);
    }
  }
  // reduce_scatter and allgather of 2^26 elements in total.
  const size_t block = kCount / n;
  for (size_t i = 0; i < block * n; ++i) a[i] = value(me, i);
  world().reduce_scatter(a.data(), b.data(), block, DataType::Float32, ReduceOp::Sum);
  size_t wrong = 0;
  for (size_t i = 0; i < block; ++i) {
    size_t g = me * block + i;
    wrong += b[i] != static_cast<float>(n) * static_cast<float>(g % 4096) / 4096.0f + rank_sum;
  }
  EXPECT_EQ(wrong, 0u) << "reduce_scatter of 2^26 float32";
  for (size_t i = 0; i < block; ++i) a[i] = value(me, me * block + i);
  world().allgather(a.data(), b.data(), block, DataType::Float32);
  wrong = 0;
  for (size_t i = 0; i < block * n; ++i) wrong += b[i] != value(static_cast<int>(i / block), i);
  EXPECT_EQ(wrong, 0u) << "allgather of 2^26 float32";
}

TEST(CollectivesMixed, BackToBackDifferentCollectives) {
  Communicator& c = world();
  const int n = c.size(), me = c.rank();
  std::vector<int64_t> v(1000), w(1000 * n);
  for (int round = 0; round < 50; ++round) {
    std::iota(v.begin(), v.end(), me + round);
    c.allreduce(v.data(), v.size(), DataType::Int64, ReduceOp::Sum);
    EXPECT_EQ(v[10], 10 * n + n * (n - 1) / 2 + round * n);
    c.broadcast(v.data(), 17, DataType::Int64, round % n);
    c.allgather(v.data(), w.data(), 1000, DataType::Int64);
    EXPECT_EQ(w[(n - 1) * 1000 + 10], v[10]);
    c.barrier();
    int64_t x = me, y = -1;
    c.reduce(&x, &y, 1, DataType::Int64, ReduceOp::Max, 0);
    if (me == 0) {
      EXPECT_EQ(y, n - 1);
    }
  }
}

TEST(CollectivesMixed, SixtyFourOutstandingWorks) {
  Communicator& c = world();
  const int n = c.size(), me = c.rank();
  constexpr int kWorks = 64;
  std::vector<std::vector<int32_t>> bufs(kWorks);
  std::vector<Work> works;
  for (int i = 0; i < kWorks; ++i) {
    // Mixed sizes and collectives, all in flight at once.
    size_t count = (i % 4 == 0) ? 100000 : 1 + i;
    bufs[i].assign(count * (i % 8 == 3 ? n : 1), me + i);
    if (i % 8 == 3)
      works.push_back(c.iallgather(bufs[i].data() + me * count, bufs[i].data(), count, DataType::Int32));
    else if (i % 8 == 5)
      works.push_back(c.ibroadcast(bufs[i].data(), bufs[i].data(), count, DataType::Int32, i % n));
    else
      works.push_back(c.iallreduce(bufs[i].data(), count, DataType::Int32, ReduceOp::Sum));
  }
  // Wait in reverse: completion still follows issue order.
  for (int i = kWorks - 1; i >= 0; --i) works[i].wait();
  for (int i = 0; i < kWorks; ++i) {
    if (i % 8 == 3) {
      size_t count = 1 + i;
      for (int r = 0; r < n; ++r) EXPECT_EQ(bufs[i][r * count], r + i) << "work " << i;
    } else if (i % 8 == 5) {
      EXPECT_EQ(bufs[i][0], i % n + i) << "work " << i;
    } else {
      EXPECT_EQ(bufs[i].back(), n * i + n * (n - 1) / 2) << "work " << i;
    }
  }
}

TEST(CollectivesMixed, WorkLeftBehindByAWaitFinishesWithoutTheCaller) {
  // The caller waits for a small allreduce while a large one is queued behind it, then stays
  // away from the engine: the progress thread must carry the large one to the end alone.
  Communicator& c = world();
  const int n = c.size(), me = c.rank();
  std::vector<float> small(8, 1.0f), large(size_t{4} << 20, static_cast<float>(me));
  Work first = c.iallreduce(small.data(), small.size(), DataType::Float32, ReduceOp::Sum);
  Work second = c.iallreduce(large.data(), large.size(), DataType::Float32, ReduceOp::Sum);
  first.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // One look, no waiting: 16 MiB over several ranks takes many steps, far more than test() drives.
  EXPECT_TRUE(second.test()) << "the progress thread did not finish the allreduce while the caller slept";
  second.wait();
  EXPECT_EQ(large[12345], static_cast<float>(n * (n - 1) / 2));
  c.barrier();
}

TEST(CollectivesMixed, UnevenPointToPointTrafficBeforeACollective) {
  // Ranks 0 and 1 exchange messages that the others never see; the collective that follows
  // must still match up on every rank.
  Communicator& c = world();
  const int n = c.size(), me = c.rank();
  std::vector<int> box(4, me);
  if (n >= 2 && me < 2) {
    for (int i = 0; i < 5; ++i) {
      Work r = c.irecv(box.data(), sizeof(int), 1 - me, 40 + i);
      c.send(box.data() + 1, sizeof(int), 1 - me, 40 + i);
      r.wait();
    }
  }
  int64_t x = me + 1;
  c.allreduce(&x, 1, DataType::Int64, ReduceOp::Sum);
  EXPECT_EQ(x, n * (n + 1) / 2);
}

TEST(CollectivesMixed, TwoCommunicatorsDoNotInterfere) {
  Communicator& a = comm(Algorithm::Ring);
  Communicator& b = comm(Algorithm::Tree);
  std::vector<float> x(300000, 1.0f), y(300000, 2.0f);
  for (int i = 0; i < 10; ++i) {
    Work wa = a.iallreduce(x.data(), x.size(), DataType::Float32, ReduceOp::Max);
    Work wb = b.iallreduce(y.data(), y.size(), DataType::Float32, ReduceOp::Max);
    wb.wait();
    wa.wait();
  }
  EXPECT_EQ(x[12345], 1.0f);
  EXPECT_EQ(y[12345], 2.0f);
}

TEST(CollectivesErrors, BadArgumentsAreRejectedBeforeAnyMessage) {
  Communicator& c = world();
  float x = 0;
  EXPECT_THROW(c.allreduce(nullptr, &x, 1, DataType::Float32, ReduceOp::Sum), InvalidArgumentError);
  EXPECT_THROW(c.broadcast(&x, 1, DataType::Float32, c.size()), InvalidArgumentError);
  EXPECT_THROW(c.reduce(&x, &x, 1, DataType::Float32, ReduceOp::Sum, -1), InvalidArgumentError);
  // The communicator still works.
  x = 1;
  c.allreduce(&x, 1, DataType::Float32, ReduceOp::Sum);
  EXPECT_EQ(x, static_cast<float>(c.size()));
}

}  // namespace
