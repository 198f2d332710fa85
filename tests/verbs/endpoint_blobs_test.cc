// The endpoint blobs the transports publish through the store (verbs: transport/verbs/endpoint.h;
// UCX: transport/ucx/endpoint_blob.h): what one encodes parses back unchanged, and every kind of
// damage is refused with the kind of error a user can act on (another transport or version: a
// mismatch; malformed bytes: a transport error).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <vector>

#include "transport/ucx/endpoint_blob.h"
#include "transport/verbs/endpoint.h"

using namespace ringlink;

namespace {

verbs::Endpoint sample() {
  verbs::Endpoint e;
  e.rank = 2;
  e.peer = 5;
  e.fifo_depth = 256;
  e.eager_slots = 32;
  e.lid = 7;
  e.mtu = 5;
  e.fifo_addr = 0x10000;
  e.sizes_addr = 0x20000;
  e.credits_addr = 0x30000;
  e.qpns = {0x11, 0x12, 0x13};
  return e;
}

// Byte offsets in the verbs header (endpoint.cc).
constexpr size_t kNqps = 6, kRank = 8, kPeer = 12, kDepth = 16, kMtu = 27, kFifoAddr = 56;

TEST(VerbsEndpoint, RoundTrips) {
  const auto blob = verbs::encode_endpoint(sample());
  const auto p = verbs::parse_endpoint(blob);
  ASSERT_TRUE(p.ok) << p.why;
  EXPECT_EQ(p.endpoint.rank, 2);
  EXPECT_EQ(p.endpoint.peer, 5);
  EXPECT_EQ(p.endpoint.qpns, sample().qpns);
  EXPECT_EQ(p.endpoint.fifo_addr, 0x10000u);
  EXPECT_EQ(verbs::encode_endpoint(p.endpoint), blob);
}

TEST(VerbsEndpoint, AnotherTransportOrVersionIsAMismatch) {
  auto blob = verbs::encode_endpoint(sample());
  EXPECT_EQ(verbs::parse_endpoint(std::span(blob).first(20)).kind, ErrorKind::Mismatch);
  auto other = blob;
  other[0] = std::byte{0};
  EXPECT_EQ(verbs::parse_endpoint(other).kind, ErrorKind::Mismatch);
  other = blob;
  other[4] = std::byte{2};  // version 2
  const auto p = verbs::parse_endpoint(other);
  EXPECT_FALSE(p.ok);
  EXPECT_EQ(p.kind, ErrorKind::Mismatch);
  EXPECT_NE(p.why.find("version 2"), std::string::npos) << p.why;
}

template <typename T>
std::vector<std::byte> with(std::vector<std::byte> blob, size_t at, T value) {
  std::memcpy(blob.data() + at, &value, sizeof value);
  return blob;
}

TEST(VerbsEndpoint, MalformedFieldsAreRefused) {
  const auto good = verbs::encode_endpoint(sample());
  const std::vector<std::pair<std::vector<std::byte>, const char*>> bad = {
      {std::vector<std::byte>(good.begin(), good.end() - 1), "bytes; 2 data QPs make it"},
      {[&] { auto b = good; b.push_back(std::byte{0}); return b; }(), "bytes; 2 data QPs make it"},
      {with<uint16_t>(good, kNqps, 0), "names 0 data QPs"},
      {with<uint16_t>(good, kNqps, 60000), "names 60000 data QPs"},
      {with<int32_t>(good, kRank, -1), "from rank -1"},
      {with<int32_t>(good, kPeer, 2), "from rank 2 for rank 2"},
      {with<uint32_t>(good, kDepth, 1u << 20), "1048576-entry FIFO"},
      {with<uint8_t>(good, kMtu, 9), "MTU code is 9"},
      {with<uint64_t>(good, kFifoAddr, ~uint64_t{0} - 8), "wraps around"},
      {with<uint32_t>(good, good.size() - 4, 0x1000000), "QP number 0x1000000"},
  };
  for (const auto& [blob, says] : bad) {
    const auto p = verbs::parse_endpoint(blob);
    EXPECT_FALSE(p.ok) << says;
    EXPECT_EQ(p.kind, ErrorKind::Transport) << says;
    EXPECT_NE(p.why.find(says), std::string::npos) << p.why;
  }
}

TEST(UcxEndpoint, RoundTripsAndRefusesDamage) {
  const std::vector<std::byte> address(100, std::byte{0x3c});
  const auto blob = ucx::encode_endpoint(1, 0, address);
  const auto p = ucx::parse_endpoint(blob);
  ASSERT_TRUE(p.ok) << p.why;
  EXPECT_EQ(p.rank, 1);
  EXPECT_EQ(p.peer, 0);
  EXPECT_EQ(p.address.size(), 100u);
  EXPECT_EQ(p.address.data(), blob.data() + 20);

  // A bare UCX address (what this transport published before the envelope) is another version.
  EXPECT_EQ(ucx::parse_endpoint(address).kind, ErrorKind::Mismatch);
  EXPECT_EQ(ucx::parse_endpoint(std::span(blob).first(10)).kind, ErrorKind::Mismatch);
  auto v = with<uint16_t>(blob, 4, 7);
  EXPECT_EQ(ucx::parse_endpoint(v).kind, ErrorKind::Mismatch);

  const std::vector<std::pair<std::vector<std::byte>, const char*>> bad = {
      {std::vector<std::byte>(blob.begin(), blob.end() - 1), "a 100-byte address makes it 120"},
      {with<uint32_t>(blob, 16, 0), "a 0-byte UCX address"},
      {with<uint32_t>(blob, 16, 1u << 30), "a 1073741824-byte UCX address"},
      {with<int32_t>(blob, 12, 1), "from rank 1 for rank 1"},
      {with<uint16_t>(blob, 6, 1), "reserved"},
  };
  for (const auto& [b, says] : bad) {
    const auto q = ucx::parse_endpoint(b);
    EXPECT_FALSE(q.ok) << says;
    EXPECT_EQ(q.kind, ErrorKind::Transport) << says;
    EXPECT_NE(q.why.find(says), std::string::npos) << q.why;
  }
}

}  // namespace
