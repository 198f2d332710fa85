// libFuzzer target for the verbs endpoint parser (transport/verbs/endpoint.h): the input is the
// blob a peer published. Whatever it holds, parse_endpoint must not crash; what it accepts must
// be within the protocol's limits and encode back to exactly the same bytes (nothing was read
// from outside them, nothing dropped).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "tests/fuzz/fuzz_bytes.h"
#include "transport/verbs/endpoint.h"

using namespace ringlink::verbs;
using ringlink::fuzz::require;
using ringlink::fuzz::require_round_trip;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes = ringlink::fuzz::Bytes(data, size).rest();
  const ParsedEndpoint p = parse_endpoint(bytes);
  if (!p.ok) {
    require(!p.why.empty());
    return 0;
  }
  const Endpoint& e = p.endpoint;
  require(e.qpns.size() >= 2 && e.qpns.size() <= kMaxDataQps + 1);
  require(e.fifo_depth >= 1 && e.fifo_depth <= 4096);
  require(e.rank >= 0 && e.peer >= 0 && e.rank != e.peer);
  require_round_trip(encode_endpoint(e), bytes);
  return 0;
}
