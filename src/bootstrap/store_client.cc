#include "bootstrap/store_client.h"

#include <algorithm>

#include <fmt/format.h>

#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"
#include "ringlink/error.h"

namespace ringlink {

using namespace store_protocol;

namespace {

uint32_t timeout_field(milliseconds timeout) {
  return static_cast<uint32_t>(std::clamp<int64_t>(timeout.count(), 0, UINT32_MAX));
}

}  // namespace

StoreClient::StoreClient(StoreIdentity id, Deadline connect_deadline) : id_(std::move(id)) {
  fd_ = open_store_channel(id_, Channel::Request, connect_deadline, "request channel");
}

StoreClient::~StoreClient() = default;

std::string StoreClient::request(const std::string& payload, const char* operation, milliseconds server_wait) {
  std::lock_guard lk(mu_);
  if (!fd_.valid())
    throw PeerLostError(id_.rank, 0, operation, "the connection to the rendezvous store is closed");
  try {
    wire::send_frame(fd_.get(), payload, Deadline::after(kReplyTimeout));
    // The server answers a wait at its deadline; allow it that much plus a margin.
    return wire::recv_frame(fd_.get(), Deadline::after(server_wait + kReplyTimeout), kMaxFrameBytes);
  } catch (const net::SocketError& e) {
    fd_.reset();
    if (e.reason() == net::SocketError::Reason::Timeout)
      throw TimeoutError(id_.rank, 0, operation,
                         fmt::format("the rendezvous store on rank 0 did not answer: {}", e.what()));
    throw PeerLostError(id_.rank, 0, operation,
                        fmt::format("lost the rendezvous store on rank 0 ({}:{}): {}", id_.host, id_.port, e.what()));
  }
}

void StoreClient::set(const std::string& key, const std::string& value) {
  std::string reply =
      request(wire::Writer().u8(static_cast<uint8_t>(Op::Set)).str(key).str(value).take(), "store set", milliseconds(0));
  read_reply(id_, reply, "store set", 0, [](wire::Reader&, Status) {});
}

std::string StoreClient::get(const std::string& key, milliseconds timeout) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::Get)).str(key).u32(timeout_field(timeout)).take(),
                              "store get", timeout);
  return read_reply(id_, reply, "store get", -1, [](wire::Reader& r, Status) { return r.str(); });
}

bool StoreClient::check(const std::string& key) {
  std::string reply =
      request(wire::Writer().u8(static_cast<uint8_t>(Op::Check)).str(key).take(), "store check", milliseconds(0));
  return read_reply(id_, reply, "store check", -1, [](wire::Reader&, Status status) { return status == Status::Ok; });
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::Add)).str(key).i64(delta).take(),
                              "store add", milliseconds(0));
  return read_reply(id_, reply, "store add", -1, [](wire::Reader& r, Status) { return r.i64(); });
}

void StoreClient::wait_for_all_ranks(milliseconds timeout) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::JoinWait)).u32(timeout_field(timeout)).take(),
                              "bootstrap", timeout);
  try {
    read_reply(id_, reply, "bootstrap", -1, [](wire::Reader&, Status) {});
  } catch (const TimeoutError& e) {
    // The server names the first missing rank as the peer; its message lists all of them.
    throw TimeoutError(id_.rank, e.peer(), "bootstrap",
                       fmt::format("{} within {} ms (WORLD_SIZE={})", e.detail(), timeout.count(), id_.world_size));
  }
}

void StoreClient::barrier(const std::string& name, milliseconds timeout) {
  std::string key = "barrier/" + name;
  int64_t arrived = add(key, 1);
  if (arrived == id_.world_size) set(key + "/done", "1");
  try {
    get(key + "/done", timeout);
  } catch (const TimeoutError&) {
    int64_t n = add(key, 0);
    throw TimeoutError(id_.rank, -1, "barrier",
                       fmt::format("only {} of {} ranks reached '{}' within {} ms", n, id_.world_size, name,
                                   timeout.count()));
  }
}

}  // namespace ringlink
