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
  fd_ = open_store_channel(id_, Channel::Request, connect_deadline, "request channel").fd;
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
  read_reply(id_, reply, "store set", -1, [](wire::Reader& r, Status) { r.expect_end(); });
}

std::string StoreClient::get(const std::string& key, milliseconds timeout) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::Get)).str(key).u32(timeout_field(timeout)).take(),
                              "store get", timeout);
  return read_reply(id_, reply, "store get", -1, [](wire::Reader& r, Status) {
    std::string value = r.str();
    r.expect_end();
    return value;
  });
}

bool StoreClient::check(const std::string& key) {
  std::string reply =
      request(wire::Writer().u8(static_cast<uint8_t>(Op::Check)).str(key).take(), "store check", milliseconds(0));
  return read_reply(id_, reply, "store check", -1, [](wire::Reader&, Status status) { return status == Status::Ok; });
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::Add)).str(key).i64(delta).take(),
                              "store add", milliseconds(0));
  return read_reply(id_, reply, "store add", -1, [](wire::Reader& r, Status) {
    int64_t value = r.i64();
    r.expect_end();
    return value;
  });
}

void StoreClient::wait_for_all_ranks(milliseconds timeout) {
  std::string reply = request(wire::Writer().u8(static_cast<uint8_t>(Op::JoinWait)).u32(timeout_field(timeout)).take(),
                              "bootstrap", timeout);
  try {
    hosts_ = read_reply(id_, reply, "bootstrap", -1, [&](wire::Reader& r, Status) {
      uint32_t n = r.u32();
      if (n != static_cast<uint32_t>(id_.world_size))
        throw wire::FormatError(fmt::format("a roster of {} ranks for WORLD_SIZE={}", n, id_.world_size));
      std::vector<std::string> hosts;
      hosts.reserve(n);  // bounded: n is WORLD_SIZE
      for (uint32_t i = 0; i < n; ++i) hosts.push_back(r.str());
      r.expect_end();
      return hosts;
    });
  } catch (const TimeoutError& e) {
    // The server names the first missing rank as the peer; its message lists all of them.
    throw TimeoutError(id_.rank, e.peer(), "bootstrap",
                       fmt::format("{} within {} ms (WORLD_SIZE={})", e.detail(), timeout.count(), id_.world_size));
  }
}

void StoreClient::barrier(const std::string& name, milliseconds timeout) {
  std::string reply = request(
      wire::Writer().u8(static_cast<uint8_t>(Op::Barrier)).str(name).u32(timeout_field(timeout)).take(), "barrier",
      timeout);
  try {
    read_reply(id_, reply, "barrier", -1, [](wire::Reader& r, Status) { r.expect_end(); });
  } catch (const TimeoutError& e) {
    throw TimeoutError(id_.rank, e.peer(), "barrier", fmt::format("{} within {} ms", e.detail(), timeout.count()));
  }
}

void StoreClient::report_failure(const std::string& message, int culprit, ErrorKind kind) {
  std::string reply = request(wire::Writer()
                                  .u8(static_cast<uint8_t>(Op::ReportFailure))
                                  .u8(static_cast<uint8_t>(kind))
                                  .i32(culprit)
                                  .str(message)
                                  .take(),
                              "report failure", milliseconds(0));
  read_reply(id_, reply, "report failure", -1, [](wire::Reader& r, Status) { r.expect_end(); });
}

}  // namespace ringlink
