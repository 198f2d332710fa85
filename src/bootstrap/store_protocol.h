// The rendezvous store's wire protocol (rank 0 serves it over TCP; store_server.h). Messages
// are frames of wire.h fields.
//
// Handshake. A connection proves knowledge of the job token without sending it, and so does
// the server (store_auth.h computes the proofs):
//   rank -> store  HELLO     u8 Op::Hello, u32 version, i32 rank, i32 world, u32 epoch,
//                            u8 channel, u32 heartbeat_ms, nonce[32]
//   store -> rank  CHALLENGE u8 Ok, nonce[32], proof[32]   (or a Failed reply)
//   rank -> store  PROOF     u8 Op::Proof, proof[32]   once the store's proof checked out, else
//                  ABORT     u8 Op::Abort              (nothing derived from the token is sent)
//   store -> rank  u8 Ok, or a Failed reply (wrong token, WORLD_SIZE mismatch, duplicate rank)
// Until the handshake is done the store reads frames of at most kMaxHandshakeFrameBytes.
// The store refuses a WORLD_SIZE that differs from its own, a rank out of range and a rank
// that joins an epoch twice. The epoch numbers the communicators a process creates, so
// several communicators share one server with separate key spaces.
//
// A request channel then carries request/reply pairs. A watch channel stays open for the
// communicator's lifetime: the rank sends PING every heartbeat_ms, the store pushes HEARTBEAT
// as often, and either side that hears nothing for its liveness timeout declares the other
// unreachable. Closing without BYE means the rank died: the store pushes LOST to every rank.
//
// Keys (store_keys.h): "rank/<r>/..." may be written only by rank r; "count/..." are counters
// that any rank may Add to and none may Set. Every rank may read every key of its epoch.
//
// Every reply starts with a u8 Status. Ok is followed by the request's result (below), Absent
// by nothing, Failed by the failure: u8 ErrorKind, i32 culprit rank (-1: none), str message.
// The kind and culprit are what the client raises (a ringlink::Error of that kind naming the
// culprit as peer); the message is for people.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bootstrap/wire.h"
#include "common/clock.h"
#include "ringlink/error.h"

namespace ringlink::store_protocol {

inline constexpr uint32_t kVersion = 2;

enum class Op : uint8_t {
  Hello = 1,          // handshake, above
  Set = 2,            // str key, str value -> Ok
  Get = 3,            // str key, u32 timeout_ms -> Ok str value (Failed with Timeout at the deadline)
  Add = 4,            // str key, i64 delta -> Ok i64 value (InvalidArgument on overflow)
  Check = 5,          // str key -> Ok (present) or Absent
  JoinWait = 6,       // u32 timeout_ms -> Ok u32 n, n x str host (each rank's address as the store
                      // saw it) once all ranks joined the epoch (Timeout culprit: a missing rank)
  Bye = 7,            // watch channel: clean exit, no reply
  Proof = 8,          // handshake, above
  Abort = 9,          // handshake: the store's proof was wrong; no reply
  Ping = 10,          // watch channel: the rank's heartbeat, no reply
  Barrier = 11,       // str name, u32 timeout_ms -> Ok once every rank arrived (Timeout culprit:
                      // the first missing rank; the message lists them)
  ReportFailure = 12, // u8 kind, i32 culprit, str message -> Ok; the store fails the epoch and
                      // pushes FAILED with that failure to every rank
};

enum class Channel : uint8_t { Request = 0, Watch = 1 };

enum class Status : uint8_t { Ok = 0, Absent = 1, Failed = 2 };

// Why a request failed, as the server knows it.
struct Failure {
  ErrorKind kind = ErrorKind::Mismatch;
  int culprit = -1;  // the rank at fault (the missing, lost or misconfigured one); -1: none
  std::string message;
};

// Pushed on watch channels: u8 Event, then for Lost and Failed: u8 ErrorKind, i32 rank, str message.
enum class Event : uint8_t {
  Lost = 1,       // a rank's process went away, or stopped answering heartbeats
  Failed = 2,     // the job failed (mismatch, duplicate rank, a failure a rank reported)
  Heartbeat = 3,  // the store is alive; nothing follows
};

// ---- limits: what a peer's bytes may make the store hold ----
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;  // HMAC-SHA256
// The largest frame before the handshake is done (a HELLO is 54 bytes, a PROOF 33).
inline constexpr size_t kMaxHandshakeFrameBytes = 256;
// The largest frame either side accepts after it: an endpoint address, or the roster of a
// large job in a JoinWait reply.
inline constexpr size_t kMaxFrameBytes = 4u << 20;
inline constexpr size_t kMaxKeyBytes = 1024;
// Connections that have not finished the handshake; a new one beyond this evicts the oldest.
inline constexpr size_t kMaxPendingHandshakes = 64;
// Communicators (epochs) served at once, and the connections they may hold (two per rank each).
inline constexpr size_t kMaxLiveEpochs = 16;
// Bytes the store buffers across all connections (partial requests and unsent replies), and
// what it stores (keys and values, every epoch).
inline constexpr size_t kMaxBufferedBytes = 256u << 20;
inline constexpr size_t kMaxStoredBytes = 1u << 30;
// A connection that does not finish the handshake within this is dropped.
inline constexpr milliseconds kHandshakeTimeout{10000};

// How long a side waits for the other to take or answer a frame that needs no waiting.
inline constexpr milliseconds kReplyTimeout{2000};

// The heartbeat period for a liveness timeout: a tenth of it, at most a second, at least 10 ms.
milliseconds heartbeat_period(milliseconds liveness_timeout);
// How long one side of a watch channel waits before it declares the other unreachable: its
// own liveness timeout, but at least four of the other side's heartbeat periods.
milliseconds silence_limit(milliseconds liveness_timeout, milliseconds other_side_heartbeat);

// Ranks as messages list them: "3" / "3, 5" / "3, 5, 6 and 9 more", bounded so a big job's
// message stays one line.
std::string list_ranks(const std::vector<int>& ranks);

// The few encodings both sides need, written once (store_protocol.cc).
wire::Writer reply(Status status);  // a reply's start; the caller appends the result
std::string failed_reply(const Failure& failure);
Failure read_failure(wire::Reader& r);  // what follows a Failed status; FormatError if malformed
ErrorKind read_error_kind(wire::Reader& r);

struct Hello {
  uint32_t version = kVersion;
  int rank = -1;
  int world_size = -1;
  uint32_t epoch = 0;
  Channel channel = Channel::Request;
  uint32_t heartbeat_ms = 0;  // watch channel: how often the rank pings
  std::string nonce;          // kNonceBytes
};
std::string encode(const Hello& hello);
Hello read_hello(wire::Reader& r);  // after the Op byte; FormatError if malformed

struct Pushed {
  Event event = Event::Lost;
  ErrorKind kind = ErrorKind::PeerLost;
  int rank = -1;
  std::string message;
};
std::string encode(const Pushed& pushed);
Pushed read_pushed(wire::Reader& r);

}  // namespace ringlink::store_protocol
