// libFuzzer target for the UCX endpoint envelope (transport/ucx/endpoint_blob.h): the input is
// the blob a peer published. Whatever it holds, parse_endpoint must not crash; what it accepts
// hands UCX an address inside the input, of the length the envelope states, and encodes back to
// exactly the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "tests/fuzz/fuzz_bytes.h"
#include "transport/ucx/endpoint_blob.h"

using namespace ringlink::ucx;
using ringlink::fuzz::require;
using ringlink::fuzz::require_round_trip;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes = ringlink::fuzz::Bytes(data, size).rest();
  const ParsedEndpoint p = parse_endpoint(bytes);
  if (!p.ok) {
    require(!p.why.empty());
    return 0;
  }
  require(!p.address.empty() && p.address.size() <= kMaxAddressBytes);
  require(p.address.data() >= bytes.data() && p.address.data() + p.address.size() == bytes.data() + size);
  require_round_trip(encode_endpoint(p.rank, p.peer, p.address), bytes);
  return 0;
}
