#include "transport/ucx/endpoint_blob.h"

#include <cstring>

#include <fmt/format.h>

namespace ringlink::ucx {
namespace {

struct Header {
  uint32_t magic;
  uint16_t version;
  uint16_t reserved;
  int32_t rank;
  int32_t peer;
  uint32_t address_bytes;
};
static_assert(sizeof(Header) == 20);

ParsedEndpoint refused(ErrorKind kind, std::string why) {
  ParsedEndpoint p;
  p.kind = kind;
  p.why = std::move(why);
  return p;
}

}  // namespace

std::vector<std::byte> encode_endpoint(int rank, int peer, std::span<const std::byte> address) {
  Header h{kEndpointMagic, kEndpointVersion, 0, rank, peer, static_cast<uint32_t>(address.size())};
  std::vector<std::byte> out(sizeof h + address.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!address.empty()) std::memcpy(out.data() + sizeof h, address.data(), address.size());
  return out;
}

ParsedEndpoint parse_endpoint(std::span<const std::byte> bytes) {
  Header h;
  if (bytes.size() < sizeof h)
    return refused(ErrorKind::Mismatch, fmt::format("a {}-byte address is not a UCX endpoint", bytes.size()));
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kEndpointMagic) return refused(ErrorKind::Mismatch, "the address is not a UCX endpoint");
  if (h.version != kEndpointVersion)
    return refused(ErrorKind::Mismatch,
                   fmt::format("the address is a UCX endpoint of version {}, not {}", h.version, kEndpointVersion));
  if (h.reserved != 0) return refused(ErrorKind::Transport, "the endpoint's reserved field is set");
  if (h.address_bytes == 0 || h.address_bytes > kMaxAddressBytes)
    return refused(ErrorKind::Transport,
                   fmt::format("the endpoint holds a {}-byte UCX address (1 to {})", h.address_bytes, kMaxAddressBytes));
  if (bytes.size() - sizeof h != h.address_bytes)
    return refused(ErrorKind::Transport, fmt::format("the endpoint is {} bytes; a {}-byte address makes it {}",
                                                     bytes.size(), h.address_bytes, sizeof h + h.address_bytes));
  if (h.rank < 0 || h.peer < 0 || h.rank == h.peer)
    return refused(ErrorKind::Transport, fmt::format("the endpoint is from rank {} for rank {}", h.rank, h.peer));
  ParsedEndpoint p;
  p.ok = true;
  p.rank = h.rank;
  p.peer = h.peer;
  p.address = bytes.subspan(sizeof h);
  return p;
}

}  // namespace ringlink::ucx
