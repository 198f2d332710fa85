// The endpoint a verbs link publishes through the store for one peer: who wrote it and for
// whom, how its QPs are addressed, and where the peer writes into its control memory (CTS FIFO,
// size table, credit word). encode_endpoint writes it; parse_endpoint reads a peer's and checks
// everything that can be checked without the device: magic, version, exact length, counts
// within the protocol's limits, well-formed QP numbers and MTU, memory ranges that do not wrap.
// Link::connect then checks that it agrees with this side (ranks, QPs, depth, link layer).
//
// Host byte order (the bootstrap pins little-endian), fixed layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ringlink/error.h"

namespace ringlink::verbs {

inline constexpr uint32_t kEndpointMagic = 0x31425652;  // "RVB1"
inline constexpr uint16_t kEndpointVersion = 3;
// The QP index has 4 bits in a work request id (work_request.h): at most 16 data QPs.
inline constexpr uint32_t kMaxDataQps = 16;

struct Endpoint {
  int32_t rank = -1;  // the rank that published it
  int32_t peer = -1;  // the rank it is for
  uint32_t fifo_depth = 0;
  uint32_t eager_slots = 0;
  uint16_t lid = 0;
  bool ethernet = false;
  uint8_t mtu = 0;  // enum ibv_mtu
  uint8_t gid[16] = {};
  int32_t gid_index = -1;
  uint64_t fifo_addr = 0;
  uint32_t fifo_rkey = 0;
  uint64_t sizes_addr = 0;
  uint32_t sizes_rkey = 0;
  uint64_t credits_addr = 0;
  std::vector<uint32_t> qpns;  // the data QPs, then the control QP
};

std::vector<std::byte> encode_endpoint(const Endpoint& e);

struct ParsedEndpoint {
  bool ok = false;
  Endpoint endpoint;
  // Otherwise: Mismatch for another transport or version (the likely cause is configuration),
  // Transport for bytes that claim to be an endpoint of this version and are malformed.
  ErrorKind kind = ErrorKind::Transport;
  std::string why;
};
ParsedEndpoint parse_endpoint(std::span<const std::byte> bytes);

}  // namespace ringlink::verbs
