// Point-to-point messages through the transport: every pair of ranks, sizes 0 B to 64 MiB,
// checked bitwise.
#include <gtest/gtest.h>

#include <array>
#include <numeric>
#include <thread>

#include "multirank/world.h"

using ringlink::Work;
using namespace ringlink::testing;

namespace {

class PointToPoint : public ::testing::TestWithParam<size_t> {};

TEST_P(PointToPoint, EveryPairBitwise) {
  auto& c = world();
  const int me = c.rank(), n = c.size();
  const size_t bytes = GetParam();
  std::vector<std::vector<uint8_t>> out(n), in(n);
  std::vector<Work> works;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    out[p].resize(bytes);
    fill_pattern(out[p], me, p, bytes);
    in[p].assign(bytes, 0xEE);
    works.push_back(c.irecv(in[p].data(), bytes, p, 7));
    works.push_back(c.isend(out[p].data(), bytes, p, 7));
  }
  for (auto& w : works) w.wait();
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    EXPECT_EQ(first_mismatch(in[p], bytes, p, me, bytes), -1) << "from rank " << p << ", " << bytes << " bytes";
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, PointToPoint, ::testing::Values(0, 1, 4096, 64u << 20),
                         [](const auto& test) { return std::to_string(test.param) + "B"; });

TEST(PointToPointOrder, SameTagCompletesInPostingOrder) {
  auto& c = world();
  const int me = c.rank(), n = c.size();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  constexpr int kMessages = 64;
  std::array<uint32_t, kMessages> sent{}, got{};
  std::vector<Work> works;
  for (int i = 0; i < kMessages; ++i) works.push_back(c.irecv(&got[i], sizeof(uint32_t), prev, 3));
  for (int i = 0; i < kMessages; ++i) {
    sent[i] = static_cast<uint32_t>(me * 1000 + i);
    works.push_back(c.isend(&sent[i], sizeof(uint32_t), next, 3));
  }
  for (auto& w : works) w.wait();
  for (int i = 0; i < kMessages; ++i) EXPECT_EQ(got[i], static_cast<uint32_t>(prev * 1000 + i));
}

TEST(PointToPointOrder, TagsSelectMessages) {
  auto& c = world();
  const int me = c.rank(), n = c.size();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  uint64_t a = 0, b = 0;
  const uint64_t va = 0xA0 + me, vb = 0xB0 + me;
  // Post receives in the opposite order of the sends: tags, not order, decide.
  Work rb = c.irecv(&b, 8, prev, 11);
  Work ra = c.irecv(&a, 8, prev, 10);
  c.send(&va, 8, next, 10);
  c.send(&vb, 8, next, 11);
  ra.wait();
  rb.wait();
  EXPECT_EQ(a, 0xA0u + prev);
  EXPECT_EQ(b, 0xB0u + prev);
}

TEST(PointToPointErrors, BadPeerIsInvalidArgument) {
  auto& c = world();
  char x = 0;
  EXPECT_THROW(c.isend(&x, 1, c.size(), 0), ringlink::InvalidArgumentError);
  EXPECT_THROW(c.isend(&x, 1, c.rank(), 0), ringlink::InvalidArgumentError);
  EXPECT_THROW(c.irecv(&x, 1, -1, 0), ringlink::InvalidArgumentError);
  EXPECT_THROW(c.isend(&x, 1, (c.rank() + 1) % c.size(), uint64_t{1} << 39), ringlink::InvalidArgumentError);
}

TEST(PointToPointErrors, TooLongMessageIsMismatchNamingThePeer) {
  auto& c = world();
  const int me = c.rank(), n = c.size();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  // Ranks 0 and 1 only: rank 0 sends 16 bytes into rank 1's 8-byte receive.
  if (me == 0) {
    std::vector<uint8_t> big(16, 1);
    c.send(big.data(), big.size(), 1, 21);
  } else if (me == 1) {
    std::vector<uint8_t> small(8);
    try {
      c.recv(small.data(), small.size(), 0, 21);
      ADD_FAILURE() << "a 16-byte message fit an 8-byte receive";
    } catch (const ringlink::MismatchError& e) {
      EXPECT_EQ(e.peer(), 0);
      EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
