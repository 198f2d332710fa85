#include "bootstrap/store_channel.h"

#include <algorithm>

#include <fmt/format.h>

#include "bootstrap/store_auth.h"
#include "bootstrap/wire.h"
#include "ringlink/error.h"

namespace ringlink {

using namespace store_protocol;

namespace {

// The store answers each handshake step at once; a listener that does not is not a store.
constexpr milliseconds kHandshakeReplyTimeout{10000};
// The store's handshake replies are small; a Failed one carries a message.
constexpr size_t kMaxHandshakeReplyBytes = 64 * 1024;

}  // namespace

void raise_failure(const StoreIdentity& id, const Failure& failure, const char* operation, int default_peer) {
  int peer = failure.culprit < 0 ? default_peer : failure.culprit == id.rank ? -1 : failure.culprit;
  throw_error(failure.kind, id.rank, peer, operation, failure.message);
}

OpenedChannel open_store_channel(const StoreIdentity& id, Channel channel, Deadline deadline, const char* what) {
  OpenedChannel opened;
  try {
    opened.fd = net::connect_tcp(id.host, id.port, deadline);
  } catch (const net::SocketError& e) {
    throw TimeoutError(id.rank, 0, "bootstrap",
                       fmt::format("could not reach the rendezvous store of rank 0 at {}:{} within the deadline: {}",
                                   id.host, id.port, e.what()));
  }
  const int fd = opened.fd.get();
  Hello hello;
  hello.rank = id.rank;
  hello.world_size = id.world_size;
  hello.epoch = id.epoch;
  hello.channel = channel;
  hello.heartbeat_ms = static_cast<uint32_t>(heartbeat_period(id.liveness_timeout).count());
  hello.nonce = store_auth::random_bytes(kNonceBytes);
  const std::string hello_payload = encode(hello);
  auto step_deadline = [&] { return Deadline::after(std::clamp(deadline.remaining(), kReplyTimeout, kHandshakeReplyTimeout)); };
  auto not_a_store = [&](const char* why) {
    return TransportError(id.rank, 0, "bootstrap",
                          fmt::format("the process listening at {}:{} does not speak the store protocol ({}): it is "
                                      "not rank 0's rendezvous store (another program holds the port?)",
                                      id.host, id.port, why));
  };
  auto exchange = [&](const std::string& payload) {
    try {
      wire::send_frame(fd, payload, step_deadline());
      return wire::recv_frame(fd, step_deadline(), kMaxHandshakeReplyBytes);
    } catch (const net::SocketError& e) {
      if (e.reason() == net::SocketError::Reason::Other) throw not_a_store(e.what());  // a frame no store sends
      throw TransportError(id.rank, 0, "bootstrap",
                           fmt::format("{} handshake with the store at {}:{} failed: {} (is the process listening "
                                       "there rank 0 of this job?)",
                                       what, id.host, id.port, e.what()));
    }
  };

  // 1. HELLO; the store answers with its nonce and its proof.
  std::string challenge = exchange(hello_payload);
  std::string server_nonce, server_proof;
  try {
    wire::Reader r(challenge);
    auto status = static_cast<Status>(r.u8());
    if (status == Status::Failed) raise_failure(id, read_failure(r), "bootstrap", 0);
    if (status != Status::Ok) throw wire::FormatError("unexpected status");
    server_nonce = r.fixed(kNonceBytes);
    server_proof = r.fixed(kProofBytes);
    r.expect_end();
  } catch (const wire::FormatError& e) {
    throw not_a_store(e.what());
  }

  // 2. Prove this rank's knowledge only to a store that proved its own.
  if (!store_auth::proofs_equal(server_proof, store_auth::server_proof(id.token, hello_payload, server_nonce))) {
    try {
      wire::send_frame(fd, wire::Writer().u8(static_cast<uint8_t>(Op::Abort)).take(), Deadline::after(kReplyTimeout));
    } catch (const net::SocketError&) {
    }
    throw InvalidArgumentError(
        id.rank, 0, "bootstrap",
        fmt::format("the store at {}:{} could not prove that it knows this job's token: a wrong job token "
                    "(RINGLINK_JOB_TOKEN differs from rank 0's), or the process listening there is not rank 0 of "
                    "this job (another job's store, or a program squatting on the port)",
                    id.host, id.port));
  }
  std::string welcome = exchange(wire::Writer()
                                     .u8(static_cast<uint8_t>(Op::Proof))
                                     .fixed(store_auth::client_proof(id.token, hello_payload, server_nonce))
                                     .take());
  // 3. Admitted, or refused: a wrong token names no culprit (the refusal comes from rank 0).
  read_reply(id, welcome, "bootstrap", 0, [&](wire::Reader& r, Status status) {
    if (status != Status::Ok) throw wire::FormatError("the handshake was answered with Absent");
    opened.store_heartbeat = milliseconds(r.u32());
    r.expect_end();
  });
  return opened;
}

}  // namespace ringlink
