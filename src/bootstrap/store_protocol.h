// The rendezvous store's wire protocol (rank 0 serves it over TCP; see store.h).
//
// Every connection starts with HELLO {token, rank, world_size, epoch, channel}. The server
// refuses a wrong token, a WORLD_SIZE that differs from the first rank's, a rank out of
// range and a rank that joins an epoch twice. The epoch numbers the communicators a process
// creates, so several communicators share one server with separate key spaces.
// A request channel carries request/response pairs; a watch channel stays open for the
// communicator's lifetime: its closing without BYE means the rank died, and the server
// pushes LOST to every other rank of the epoch.
#pragma once

#include <cstdint>

namespace ringlink::store_protocol {

enum class Op : uint8_t {
  Hello = 1,     // str token, i32 rank, i32 world, u32 epoch, u8 channel -> status, str message
  Set = 2,       // str key, str value -> status
  Get = 3,       // str key, u32 timeout_ms -> status, str value-or-message
  Add = 4,       // str key, i64 delta -> status, i64 value
  Check = 5,     // str key -> status (Ok: present, Timeout: absent)
  JoinWait = 6,  // u32 timeout_ms -> status, str message (Ok once all ranks joined the epoch)
  Bye = 7,       // watch channel: clean exit, no reply
};

enum class Channel : uint8_t { Request = 0, Watch = 1 };

enum class Status : uint8_t { Ok = 0, Timeout = 1, Error = 2 };

// Pushed on watch channels.
enum class Event : uint8_t {
  Lost = 1,    // i32 rank, str message: a rank's process went away
  Failed = 2,  // i32 rank, str message: the job is misconfigured (mismatch, duplicate rank)
};

}  // namespace ringlink::store_protocol
