// The endpoint a UCX transport publishes through the store for one peer: a small envelope around
// UCX's worker address, so that what reaches ucp_ep_create is exactly the bytes a ringlink UCX
// transport of this version wrote, of the length it wrote, for this rank. UCX unpacks the
// address itself and cannot be asked to check it first; the envelope is what can be checked.
//
// Layout (host byte order; the bootstrap pins little-endian): magic, version, the publishing
// rank, the rank it is for, the address length, then that many address bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ringlink/error.h"

namespace ringlink::ucx {

inline constexpr uint32_t kEndpointMagic = 0x31585552;  // "RUX1"
inline constexpr uint16_t kEndpointVersion = 1;
// UCX worker addresses are a few hundred bytes per device; far below this on any host.
inline constexpr uint32_t kMaxAddressBytes = 64u << 10;

std::vector<std::byte> encode_endpoint(int rank, int peer, std::span<const std::byte> address);

struct ParsedEndpoint {
  bool ok = false;
  int rank = -1;
  int peer = -1;
  std::span<const std::byte> address;  // inside the parsed bytes
  // Otherwise: Mismatch for another transport or version (the likely cause is configuration),
  // Transport for bytes that claim to be this envelope and are malformed.
  ErrorKind kind = ErrorKind::Transport;
  std::string why;
};
ParsedEndpoint parse_endpoint(std::span<const std::byte> bytes);

}  // namespace ringlink::ucx
