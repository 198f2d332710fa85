// One isend or irecv on a link, from posting to completion, and what failed it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "common/host_buffer.h"
#include "ringlink/error.h"
#include "transport.h"
#include "transport/verbs/mr_cache.h"
#include "transport/verbs/wire.h"

namespace ringlink::verbs {

struct Failure {
  ErrorKind kind = ErrorKind::Transport;
  std::string detail;
  bool weak = false;  // a consequence (a flush), replaced by the cause when it arrives
};

struct Op {
  bool is_send = false;
  uint32_t serial = 0;  // per link and direction
  Tag tag = 0;
  std::byte* buf = nullptr;  // where the bytes go / come from on the wire
  size_t bytes = 0;
  MemoryKind kind = MemoryKind::Host;
  std::shared_ptr<Registration> reg;

  bool done = false;     // complete, failed or cancelled
  bool visible = false;  // done, and so is every earlier op of the same tag and direction
  std::optional<Failure> failed;
  size_t result_bytes = 0;

  uint64_t msn = 0;  // its number among the messages of its tag and direction
  // Send: the clear-to-send it was matched with, and the stripes whose completion it awaits.
  wire::CtsEntry cts{};
  uint32_t stripes_left = 0;
  // Receive: the sequence number of its clear-to-send (0: none written yet), and stripes landed.
  uint64_t seq = 0;
  uint32_t stripes_got = 0;
  uint32_t stripes_want = 0;  // as the first immediate announced
};

inline const char* op_name(const Op& op) { return op.is_send ? "send" : "recv"; }

// A receive met a message of `size` bytes from `peer`, more than it posted.
inline Failure too_long(int peer, const Op& recv, uint64_t size) {
  return {ErrorKind::Mismatch, fmt::format("the message from rank {} with tag {} is {} bytes, larger than the {} bytes posted",
                                           peer, recv.tag, size, recv.bytes)};
}

}  // namespace ringlink::verbs
