// The CTS FIFO (wrap-around, torn and stale entries, flow control), the immediate encoding and
// the MR cache (hits, sub-ranges, overlaps, invalidation, eviction, reallocated memory), each on
// its own.
#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <stdexcept>
#include <deque>
#include <vector>

#include "transport/verbs/mr_cache.h"
#include "transport/verbs/wire.h"

using namespace ringlink;
using namespace ringlink::verbs;

namespace {

// ---- CTS FIFO --------------------------------------------------------------------------------

struct Fifo {
  explicit Fifo(uint32_t depth) : mem(depth), slots(depth), reader(mem.data(), depth) {
    std::memset(mem.data(), 0, mem.size() * sizeof(wire::CtsEntry));
  }
  // What the receiver's RDMA WRITE of an entry does to the sender's memory.
  uint64_t post(uint64_t tag) {
    uint64_t seq = slots.post();
    wire::CtsEntry& e = mem[slots.slot_of(seq)];
    e.seq_head = seq;
    e.addr = 0x1000 * seq;
    e.size = seq * 3;
    e.tag = tag;
    e.rkey = 0x77;
    e.slot = slots.slot_of(seq);
    e.seq_tail = seq;
    return seq;
  }
  std::vector<wire::CtsEntry> mem;
  wire::CtsSlots slots;
  wire::CtsReader reader;
};

TEST(CtsFifo, WrapsAroundManyTimesInOrder) {
  Fifo f(8);
  std::deque<uint64_t> outstanding;  // receives whose entry is posted, in order
  uint64_t next_tag = 0, expect_seq = 1;
  for (int step = 0; step < 10000; ++step) {
    // Post as many as flow control allows, sometimes fewer.
    while (f.slots.can_post() && (step % 3 != 0 || outstanding.empty())) outstanding.push_back(f.post(next_tag++));
    ASSERT_LE(f.slots.outstanding(), 8u) << "the FIFO never holds more than its depth";
    // The sender takes what arrived, in sequence order.
    while (auto e = f.reader.poll()) {
      ASSERT_EQ(e->seq_head, expect_seq);
      ASSERT_EQ(e->tag, expect_seq - 1);
      ASSERT_EQ(e->size, expect_seq * 3);
      ++expect_seq;
      // Its receive completes (maybe later): the slot frees.
      f.slots.release(e->slot);
      outstanding.pop_front();
    }
  }
  EXPECT_GT(expect_seq, 8u * 100) << "hundreds of laps";
}

TEST(CtsFifo, NeverTakesATornOrStaleEntry) {
  Fifo f(4);
  for (int i = 0; i < 4; ++i) f.post(i);
  for (int i = 0; i < 4; ++i) {
    auto e = f.reader.poll();
    ASSERT_TRUE(e);
    f.slots.release(e->slot);
  }
  // Stale: slot 0 still holds entry 1 from the last lap; the reader wants entry 5.
  EXPECT_FALSE(f.reader.poll());
  // Torn: entry 5's head has landed but not its tail.
  wire::CtsEntry& e = f.mem[0];
  e.seq_head = 5;
  e.tag = 99;
  EXPECT_FALSE(f.reader.poll()) << "half an entry is not an entry";
  e.seq_tail = 4;  // a tail from another lap
  EXPECT_FALSE(f.reader.poll());
  e.seq_tail = 5;
  auto whole = f.reader.poll();
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->tag, 99u);
}

TEST(CtsFifo, AFullFifoWaitsForTheOldestSlot) {
  wire::CtsSlots s(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(s.can_post());
    s.post();
  }
  EXPECT_FALSE(s.can_post());
  s.release(2);  // a later receive completed: entry 5 still needs slot 0
  EXPECT_FALSE(s.can_post());
  s.release(0);
  EXPECT_TRUE(s.can_post());
  EXPECT_EQ(s.slot_of(s.post()), 0u);
}

TEST(Immediate, RoundTrips) {
  auto small = wire::decode(wire::encode_small(4095, wire::kImmSmallLimit - 1));
  EXPECT_TRUE(small.small);
  EXPECT_EQ(small.slot, 4095u);
  EXPECT_EQ(small.size, wire::kImmSmallLimit - 1);
  EXPECT_EQ(small.stripes, 1u);
  auto large = wire::decode(wire::encode_large(17, 16, true, false));
  EXPECT_FALSE(large.small);
  EXPECT_EQ(large.slot, 17u);
  EXPECT_EQ(large.stripes, 16u);
  EXPECT_TRUE(large.size_in_table);
  EXPECT_FALSE(large.truncated);
  auto trunc = wire::decode(wire::encode_large(3, 1, true, true));
  EXPECT_TRUE(trunc.truncated);
  EXPECT_EQ(wire::stripe_count(100, 4), 1u);
  EXPECT_EQ(wire::stripe_count(16u << 20, 4), 4u);
  EXPECT_EQ(wire::stripe_count(600u << 10, 8), 2u);
  EXPECT_EQ(wire::stripe_count(64u << 20, 1), 1u);
}

// ---- MR cache --------------------------------------------------------------------------------

struct FakeRegistrar {
  int registered = 0, released = 0;
  uint32_t next_key = 1;
  MrCache::RegisterFn fn() {
    return [this](uintptr_t start, size_t len, MemoryKind kind) {
      ++registered;
      uint32_t k = next_key++;
      return std::make_shared<Registration>(start, len, kind, k, k, [this] { ++released; });
    };
  }
};

TEST(MrCache, HitsForTheSameBufferAndItsParts) {
  FakeRegistrar r;
  MrCache cache(r.fn(), size_t{1} << 40);
  std::vector<char> buf(1 << 20);
  auto a = cache.acquire(buf.data(), buf.size(), MemoryKind::Host);
  auto b = cache.acquire(buf.data(), buf.size(), MemoryKind::Host);
  auto c = cache.acquire(buf.data() + 1000, 5000, MemoryKind::Host);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(r.registered, 1);
  EXPECT_EQ(cache.stats().hits, 2u);
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_TRUE(a->contains(reinterpret_cast<uintptr_t>(buf.data()), buf.size()));
  EXPECT_EQ(a->start() % 4096, 0u) << "page-aligned";
}

TEST(MrCache, OverlappingRequestRegistersTheUnion) {
  FakeRegistrar r;
  MrCache cache(r.fn(), size_t{1} << 40);
  std::vector<char> buf(1 << 20);
  auto first = cache.acquire(buf.data(), 8192, MemoryKind::Host);
  auto wider = cache.acquire(buf.data() + 4096, 1 << 19, MemoryKind::Host);
  EXPECT_NE(first, wider);
  EXPECT_TRUE(wider->contains(reinterpret_cast<uintptr_t>(buf.data()), 8192)) << "the union covers both";
  EXPECT_EQ(cache.stats().entries, 1u) << "entries never overlap";
  EXPECT_EQ(cache.acquire(buf.data(), 8192, MemoryKind::Host), wider);
  EXPECT_EQ(r.released, 0) << "the old registration lives while someone holds it";
  first.reset();
  EXPECT_EQ(r.released, 1);
}

TEST(MrCache, AStaleNeighbourDoesNotBlockRegistration) {
  // Registration of the union fails (the old range is unmapped now): the request's own range
  // is registered instead.
  int calls = 0;
  std::vector<char> buf(1 << 20);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(buf.data());
  MrCache cache(
      [&](uintptr_t start, size_t len, MemoryKind kind) -> std::shared_ptr<Registration> {
        ++calls;
        if (calls == 2) throw std::runtime_error("Bad address");
        return std::make_shared<Registration>(start, len, kind, 1, 1, nullptr);
      },
      size_t{1} << 40);
  cache.acquire(buf.data(), 8192, MemoryKind::Host);
  auto reg = cache.acquire(buf.data() + 4096, 1 << 19, MemoryKind::Host);
  EXPECT_EQ(calls, 3);
  EXPECT_GT(reg->start(), lo & ~uintptr_t{4095});
  EXPECT_EQ(cache.stats().entries, 1u);
}

TEST(MrCache, InvalidationDropsEntriesButNotRegistrationsInUse) {
  FakeRegistrar r;
  MrCache cache(r.fn(), size_t{1} << 40);
  std::vector<char> mem(1 << 20);
  char* a_base = mem.data() + 4096 - reinterpret_cast<uintptr_t>(mem.data()) % 4096;
  std::span<char> a(a_base, 1 << 16), b(a_base + (1 << 17), 1 << 16);  // pages apart
  auto ra = cache.acquire(a.data(), a.size(), MemoryKind::Host);
  cache.acquire(b.data(), b.size(), MemoryKind::Host);
  EXPECT_EQ(r.released, 0);
  EXPECT_EQ(invalidate_registrations(b.data(), b.size()), 1u);  // nobody holds b's: released now
  EXPECT_EQ(r.released, 1);
  EXPECT_EQ(cache.invalidate(a.data() + 100, 1), 1u);  // any overlap counts
  EXPECT_EQ(r.released, 1) << "a message in flight still holds a's";
  ra.reset();
  EXPECT_EQ(r.released, 2);
  cache.acquire(a.data(), a.size(), MemoryKind::Host);
  EXPECT_EQ(r.registered, 3) << "registered anew after invalidation";
  EXPECT_EQ(cache.stats().invalidations, 2u);
}

TEST(MrCache, EvictsLeastRecentlyUsedIdleEntries) {
  FakeRegistrar r;
  MrCache cache(r.fn(), 3 * 4096);
  std::vector<char> mem(16 * 4096);
  auto page = [&](int i) { return mem.data() + (reinterpret_cast<uintptr_t>(mem.data()) % 4096 ? 4096 - reinterpret_cast<uintptr_t>(mem.data()) % 4096 : 0) + i * 8192; };
  auto held = cache.acquire(page(0), 10, MemoryKind::Host);
  cache.acquire(page(1), 10, MemoryKind::Host);
  cache.acquire(page(2), 10, MemoryKind::Host);
  cache.acquire(page(1), 10, MemoryKind::Host);  // page 1 used again: page 2 is now the oldest idle
  cache.acquire(page(3), 10, MemoryKind::Host);  // over the limit: one goes
  auto s = cache.stats();
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.entries, 3u);
  int before = r.registered;
  cache.acquire(page(0), 10, MemoryKind::Host);
  cache.acquire(page(1), 10, MemoryKind::Host);
  EXPECT_EQ(r.registered, before) << "held and recently used entries stay";
  cache.acquire(page(2), 10, MemoryKind::Host);
  EXPECT_EQ(r.registered, before + 1) << "the evicted one is registered again";
}

TEST(MrCache, ReallocatedMemoryIsRegisteredAgain) {
  FakeRegistrar r;
  uint64_t identity = 1;
  MrCache cache(r.fn(), size_t{1} << 40, [&](uintptr_t, MemoryKind) { return identity; });
  std::vector<char> buf(4096);
  cache.acquire(buf.data(), buf.size(), MemoryKind::Cuda);
  cache.acquire(buf.data(), buf.size(), MemoryKind::Cuda);
  EXPECT_EQ(r.registered, 1);
  identity = 2;  // freed and allocated again at the same address (a new CUDA buffer ID)
  cache.acquire(buf.data(), buf.size(), MemoryKind::Cuda);
  EXPECT_EQ(r.registered, 2);
  EXPECT_EQ(cache.stats().stale, 1u);
  // Another memory kind at the same addresses is never a hit.
  cache.acquire(buf.data(), buf.size(), MemoryKind::Host);
  EXPECT_EQ(r.registered, 3);
}

}  // namespace
