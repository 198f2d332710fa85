// A rank's connection to the rendezvous store: who the rank is, the handshake that opens a
// request or watch channel (store_protocol.h), and how a Failed reply becomes a typed
// ringlink::Error. StoreClient and WatchChannel are built on it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "common/clock.h"
#include "common/socket.h"
#include "ringlink/error.h"

namespace ringlink {

struct StoreIdentity {
  std::string host;
  int port = 0;
  std::string token;
  int rank = -1;
  int world_size = -1;
  uint32_t epoch = 0;
  // Watch channel: silence from the store after which it is declared unreachable.
  milliseconds liveness_timeout{10000};
};

struct OpenedChannel {
  net::Fd fd;
  milliseconds store_heartbeat{0};  // how often the store sends heartbeats on a watch channel
};

// Connects to the store and runs the handshake. The store must prove it knows the job token
// before this rank proves it does; a store that cannot (another job's, or a process squatting
// on the port) is an InvalidArgumentError naming rank 0, and one that does not speak the
// protocol a TransportError. A refusal raises the error the server names (a wrong token:
// InvalidArgumentError; a disagreement on WORLD_SIZE or rank ids: MismatchError); an
// unreachable store is a TimeoutError naming rank 0. `what` names the channel in messages.
OpenedChannel open_store_channel(const StoreIdentity& id, store_protocol::Channel channel, Deadline deadline,
                                 const char* what);

// Raises the error a Failed reply describes, as this rank's error in `operation`. The peer is
// the reply's culprit; `default_peer` where the reply names none; none where it names this rank.
[[noreturn]] void raise_failure(const StoreIdentity& id, const store_protocol::Failure& failure,
                                const char* operation, int default_peer);

// Reads a reply: a Failed one raises its failure (raise_failure); Ok and Absent go to
// `result(reader, status)`, whose value is returned. Malformed bytes are a TransportError
// naming rank 0, the store's host.
template <typename Result>
auto read_reply(const StoreIdentity& id, std::string_view bytes, const char* operation, int default_peer,
                Result&& result) {
  using store_protocol::Status;
  try {
    wire::Reader r(bytes);
    auto status = static_cast<Status>(r.u8());
    if (status == Status::Failed) raise_failure(id, store_protocol::read_failure(r), operation, default_peer);
    if (status != Status::Ok && status != Status::Absent)
      throw wire::FormatError(fmt::format("unknown status {}", static_cast<int>(status)));
    return result(r, status);
  } catch (const wire::FormatError& e) {
    throw TransportError(id.rank, 0, operation,
                         fmt::format("malformed reply from the rendezvous store on rank 0: {}", e.what()));
  }
}

}  // namespace ringlink
