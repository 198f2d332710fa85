#include "bootstrap/store_channel.h"

#include <algorithm>

#include <fmt/format.h>

#include "bootstrap/wire.h"
#include "ringlink/error.h"

namespace ringlink {

using namespace store_protocol;

void raise_failure(const StoreIdentity& id, const Failure& failure, const char* operation, int default_peer) {
  int peer = failure.culprit < 0 ? default_peer : failure.culprit == id.rank ? -1 : failure.culprit;
  throw_error(failure.kind, id.rank, peer, operation, failure.message);
}

net::Fd open_store_channel(const StoreIdentity& id, Channel channel, Deadline deadline, const char* what) {
  net::Fd fd;
  try {
    fd = net::connect_tcp(id.host, id.port, deadline);
  } catch (const net::SocketError& e) {
    throw TimeoutError(id.rank, 0, "bootstrap",
                       fmt::format("could not reach the rendezvous store of rank 0 at {}:{} within the deadline: {}",
                                   id.host, id.port, e.what()));
  }
  std::string hello = wire::Writer()
                          .u8(static_cast<uint8_t>(Op::Hello))
                          .str(id.token)
                          .i32(id.rank)
                          .i32(id.world_size)
                          .u32(id.epoch)
                          .u8(static_cast<uint8_t>(channel))
                          .take();
  std::string reply;
  try {
    wire::send_frame(fd.get(), hello, deadline);
    reply = wire::recv_frame(fd.get(), Deadline::after(std::max(deadline.remaining(), kReplyTimeout)), kMaxFrameBytes);
  } catch (const net::SocketError& e) {
    throw TransportError(id.rank, 0, "bootstrap",
                         fmt::format("{} handshake with the store at {}:{} failed: {} (a wrong RINGLINK_JOB_TOKEN "
                                     "makes rank 0 close the connection)",
                                     what, id.host, id.port, e.what()));
  }
  // A wrong token names no culprit: the refusal comes from rank 0.
  read_reply(id, reply, "bootstrap", 0, [](wire::Reader&, Status status) {
    if (status != Status::Ok) throw wire::FormatError("HELLO answered with Absent");
  });
  return fd;
}

}  // namespace ringlink
