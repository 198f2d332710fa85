// The rendezvous store's wire protocol (rank 0 serves it over TCP; store_server.h). Messages
// are frames of wire.h fields.
//
// Every connection starts with HELLO {token, rank, world_size, epoch, channel}. The server
// refuses a wrong token, a WORLD_SIZE that differs from the first rank's, a rank out of
// range and a rank that joins an epoch twice. The epoch numbers the communicators a process
// creates, so several communicators share one server with separate key spaces.
// A request channel carries request/reply pairs; a watch channel stays open for the
// communicator's lifetime: its closing without BYE means the rank died, and the server
// pushes LOST to every other rank of the epoch.
//
// Every reply starts with a u8 Status. Ok is followed by the request's result (below), Absent
// by nothing, Failed by the failure: u8 ErrorKind, i32 culprit rank (-1: none), str message.
// The kind and culprit are what the client raises (a ringlink::Error of that kind naming the
// culprit as peer); the message is for people.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bootstrap/wire.h"
#include "common/clock.h"
#include "ringlink/error.h"

namespace ringlink::store_protocol {

enum class Op : uint8_t {
  Hello = 1,     // str token, i32 rank, i32 world, u32 epoch, u8 channel -> Ok
  Set = 2,       // str key, str value -> Ok
  Get = 3,       // str key, u32 timeout_ms -> Ok str value (Failed with Timeout at the deadline)
  Add = 4,       // str key, i64 delta -> Ok i64 value
  Check = 5,     // str key -> Ok (present) or Absent
  JoinWait = 6,  // u32 timeout_ms -> Ok once all ranks joined the epoch (Timeout culprit: a missing rank)
  Bye = 7,       // watch channel: clean exit, no reply
};

enum class Channel : uint8_t { Request = 0, Watch = 1 };

enum class Status : uint8_t { Ok = 0, Absent = 1, Failed = 2 };

// Why a request failed, as the server knows it.
struct Failure {
  ErrorKind kind = ErrorKind::Mismatch;
  int culprit = -1;  // the rank at fault (the missing, lost or misconfigured one); -1: none
  std::string message;
};

// Pushed on watch channels: u8 Event, i32 rank, str message.
enum class Event : uint8_t {
  Lost = 1,    // a rank's process went away
  Failed = 2,  // the job is misconfigured (mismatch, duplicate rank)
};

// The largest frame either side accepts.
inline constexpr size_t kMaxFrameBytes = 64u << 20;
// How long a side waits for the other to take or answer a frame that needs no waiting.
inline constexpr milliseconds kReplyTimeout{2000};

// The few encodings both sides need, written once (store_protocol.cc).
wire::Writer reply(Status status);  // a reply's start; the caller appends the result
std::string failed_reply(const Failure& failure);
Failure read_failure(wire::Reader& r);  // what follows a Failed status; FormatError if malformed

struct Pushed {
  Event event = Event::Lost;
  int rank = -1;
  std::string message;
};
std::string encode(const Pushed& pushed);
Pushed read_pushed(wire::Reader& r);

}  // namespace ringlink::store_protocol
