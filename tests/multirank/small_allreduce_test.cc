// The small-message path: a blocking host allreduce small enough for recursive doubling runs on
// the calling thread without allocating, and its messages are those of the queued path, so ranks
// that take either path (one busy with other work, one idle) still agree.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "multirank/world.h"

using namespace ringlink;
using namespace ringlink::testing;

namespace {

// Heap allocations made by this thread while counting is on.
thread_local bool t_counting = false;
thread_local size_t t_allocations = 0;

void* counted_allocation(std::size_t bytes) {
  if (t_counting) ++t_allocations;
  if (void* p = std::malloc(bytes ? bytes : 1)) return p;
  throw std::bad_alloc();
}

}  // namespace

// Counts every allocation through operator new in this program (the library's included).
void* operator new(std::size_t bytes) { return counted_allocation(bytes); }
void* operator new[](std::size_t bytes) { return counted_allocation(bytes); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

TEST(SmallAllreduce, AllocatesNothingPerCallInSteadyState) {
  Communicator& c = world();
  if (c.size() < 2) GTEST_SKIP() << "needs two ranks";
  // The verbs transport keeps per-tag completion queues, which allocate for every new tag.
  if (c.transport_name().find("verbs") != std::string::npos)
    GTEST_SKIP() << "the verbs transport allocates its per-tag ordering per message";
  std::vector<float> in(2), out(2);
  for (int i = 0; i < 100; ++i) c.allreduce(in.data(), out.data(), in.size(), DataType::Float32, ReduceOp::Sum);
  constexpr int kCalls = 2000;
  t_allocations = 0;
  t_counting = true;
  for (int i = 0; i < kCalls; ++i) {
    in[0] = static_cast<float>(i);
    in[1] = static_cast<float>(c.rank());
    c.allreduce(in.data(), out.data(), in.size(), DataType::Float32, ReduceOp::Sum);
    if (out[0] != static_cast<float>(i * c.size())) break;
  }
  t_counting = false;
  const float ranks = static_cast<float>(c.size());
  EXPECT_EQ(out[0], static_cast<float>((kCalls - 1) * c.size()));
  EXPECT_EQ(out[1], ranks * (ranks - 1) / 2);
  EXPECT_EQ(t_allocations, 0u) << "allocations in " << kCalls << " allreduces of 8 bytes";
}

// Even ranks take the queued path (iallreduce), odd ranks the inline one, for every small
// size and a few above the signature messages' room, with every op; the results agree.
TEST(SmallAllreduce, QueuedAndInlineRanksAgree) {
  Communicator& c = world();
  const int n = c.size(), me = c.rank();
  for (size_t count : {size_t{0}, size_t{1}, size_t{2}, size_t{1000}, size_t{1024}, size_t{1025}, size_t{4000}}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Avg}) {
      std::vector<float> in(count), out(count, -1.0f);
      for (size_t i = 0; i < count; ++i) in[i] = static_cast<float>((me + 1) * (i % 7 + 1));
      if (me % 2 == 0)
        c.iallreduce(in.data(), out.data(), count, DataType::Float32, op).wait();
      else
        c.allreduce(in.data(), out.data(), count, DataType::Float32, op);
      for (size_t i = 0; i < count; ++i) {
        const float unit = static_cast<float>(i % 7 + 1);
        const float sum = unit * static_cast<float>(n * (n + 1) / 2);
        const float want = op == ReduceOp::Sum ? sum : op == ReduceOp::Max ? unit * static_cast<float>(n)
                                                                           : sum / static_cast<float>(n);
        ASSERT_FLOAT_EQ(out[i], want) << "count " << count << ", element " << i << ", op " << to_string(op);
      }
    }
  }
}

}  // namespace
