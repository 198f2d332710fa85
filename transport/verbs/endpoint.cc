#include "transport/verbs/endpoint.h"

#include <cstring>

#include <fmt/format.h>

#include "transport/verbs/wire.h"

namespace ringlink::verbs {
namespace {

// Followed by the QP numbers: the data QPs, then the control QP.
struct Header {
  uint32_t magic;
  uint16_t version;
  uint16_t nqps;
  int32_t rank;
  int32_t peer;
  uint32_t fifo_depth;
  uint32_t eager_slots;
  uint16_t lid;
  uint8_t ethernet;
  uint8_t mtu;
  int32_t gid_index;
  uint8_t gid[16];
  uint32_t fifo_rkey;
  uint32_t sizes_rkey;
  uint64_t fifo_addr;
  uint64_t sizes_addr;
  uint64_t credits_addr;
};
static_assert(sizeof(Header) == 80);

constexpr uint32_t kMaxQpn = 0xffffff;     // QP numbers are 24 bits
constexpr uint32_t kMaxEagerSlots = 4096;
constexpr uint8_t kMtuLowest = 1, kMtuHighest = 5;  // IBV_MTU_256 .. IBV_MTU_4096

// Whether [addr, addr + bytes) lies inside the address space.
bool range_fits(uint64_t addr, uint64_t bytes) { return addr + bytes >= addr; }

ParsedEndpoint malformed(std::string why) {
  ParsedEndpoint p;
  p.kind = ErrorKind::Transport;
  p.why = std::move(why);
  return p;
}

}  // namespace

std::vector<std::byte> encode_endpoint(const Endpoint& e) {
  Header h{};
  h.magic = kEndpointMagic;
  h.version = kEndpointVersion;
  h.nqps = static_cast<uint16_t>(e.qpns.empty() ? 0 : e.qpns.size() - 1);
  h.rank = e.rank;
  h.peer = e.peer;
  h.fifo_depth = e.fifo_depth;
  h.eager_slots = e.eager_slots;
  h.lid = e.lid;
  h.ethernet = e.ethernet ? 1 : 0;
  h.mtu = e.mtu;
  h.gid_index = e.gid_index;
  std::memcpy(h.gid, e.gid, sizeof h.gid);
  h.fifo_rkey = e.fifo_rkey;
  h.sizes_rkey = e.sizes_rkey;
  h.fifo_addr = e.fifo_addr;
  h.sizes_addr = e.sizes_addr;
  h.credits_addr = e.credits_addr;
  std::vector<std::byte> out(sizeof h + e.qpns.size() * sizeof(uint32_t));
  std::memcpy(out.data(), &h, sizeof h);
  if (!e.qpns.empty()) std::memcpy(out.data() + sizeof h, e.qpns.data(), e.qpns.size() * sizeof(uint32_t));
  return out;
}

ParsedEndpoint parse_endpoint(std::span<const std::byte> bytes) {
  Header h;
  if (bytes.size() < sizeof h) {
    ParsedEndpoint p;
    p.kind = ErrorKind::Mismatch;
    p.why = fmt::format("a {}-byte address is not a verbs endpoint", bytes.size());
    return p;
  }
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kEndpointMagic || h.version != kEndpointVersion) {
    ParsedEndpoint p;
    p.kind = ErrorKind::Mismatch;
    p.why = h.magic != kEndpointMagic
                ? "the address is not a verbs endpoint"
                : fmt::format("the address is a verbs endpoint of version {}, not {}", h.version, kEndpointVersion);
    return p;
  }
  // nqps, checked first, sizes what follows: exactly that many QP numbers and the control QP's.
  if (h.nqps < 1 || h.nqps > kMaxDataQps)
    return malformed(fmt::format("the endpoint names {} data QPs (1 to {})", h.nqps, kMaxDataQps));
  const size_t want = sizeof h + (h.nqps + size_t{1}) * sizeof(uint32_t);
  if (bytes.size() != want)
    return malformed(fmt::format("the endpoint is {} bytes; {} data QPs make it {}", bytes.size(), h.nqps, want));
  if (h.rank < 0 || h.peer < 0 || h.rank == h.peer)
    return malformed(fmt::format("the endpoint is from rank {} for rank {}", h.rank, h.peer));
  if (h.fifo_depth < 1 || h.fifo_depth > wire::kMaxFifoDepth || h.eager_slots < 1 || h.eager_slots > kMaxEagerSlots)
    return malformed(fmt::format("the endpoint has a {}-entry FIFO and {} eager buffers", h.fifo_depth, h.eager_slots));
  if (h.ethernet > 1) return malformed(fmt::format("the endpoint's link layer is {}", h.ethernet));
  if (h.mtu < kMtuLowest || h.mtu > kMtuHighest) return malformed(fmt::format("the endpoint's MTU code is {}", h.mtu));
  if (h.gid_index < -1) return malformed(fmt::format("the endpoint's GID index is {}", h.gid_index));
  if (!range_fits(h.fifo_addr, uint64_t{h.fifo_depth} * sizeof(wire::CtsEntry)) ||
      !range_fits(h.sizes_addr, uint64_t{h.fifo_depth} * sizeof(uint64_t)) || !range_fits(h.credits_addr, sizeof(uint64_t)))
    return malformed("the endpoint's control memory wraps around the address space");

  ParsedEndpoint p;
  Endpoint& e = p.endpoint;
  e.qpns.resize(h.nqps + size_t{1});
  std::memcpy(e.qpns.data(), bytes.data() + sizeof h, e.qpns.size() * sizeof(uint32_t));
  for (uint32_t qpn : e.qpns)
    if (qpn == 0 || qpn > kMaxQpn) return malformed(fmt::format("the endpoint names QP number {:#x}", qpn));
  e.rank = h.rank;
  e.peer = h.peer;
  e.fifo_depth = h.fifo_depth;
  e.eager_slots = h.eager_slots;
  e.lid = h.lid;
  e.ethernet = h.ethernet != 0;
  e.mtu = h.mtu;
  e.gid_index = h.gid_index;
  std::memcpy(e.gid, h.gid, sizeof e.gid);
  e.fifo_addr = h.fifo_addr;
  e.fifo_rkey = h.fifo_rkey;
  e.sizes_addr = h.sizes_addr;
  e.sizes_rkey = h.sizes_rkey;
  e.credits_addr = h.credits_addr;
  p.ok = true;
  return p;
}

}  // namespace ringlink::verbs
