#include "bootstrap/watch_channel.h"

#include <fmt/format.h>

#include "bootstrap/store_protocol.h"
#include "bootstrap/wire.h"

namespace ringlink {

using namespace store_protocol;

WatchChannel::WatchChannel(const StoreIdentity& id, Deadline connect_deadline) : id_(id) {
  fd_ = open_store_channel(id_, Channel::Watch, connect_deadline, "watch channel");
}

WatchChannel::~WatchChannel() = default;

WatchChannel::Event WatchChannel::read_event() {
  Event ev;
  try {
    std::string frame = wire::recv_frame(fd_.get(), Deadline::after(kReplyTimeout), kMaxFrameBytes);
    wire::Reader r(frame);
    Pushed pushed = read_pushed(r);
    ev.lost = pushed.event == store_protocol::Event::Lost;
    ev.rank = pushed.rank;
    ev.message = std::move(pushed.message);
  } catch (const std::exception& e) {
    ev.lost = true;
    ev.rank = 0;
    ev.message = fmt::format("rank 0 exited or was killed (its rendezvous store at {}:{} closed: {})", id_.host,
                             id_.port, e.what());
    fd_.reset();
  }
  return ev;
}

void WatchChannel::bye() {
  if (!fd_.valid()) return;
  try {
    wire::send_frame(fd_.get(), wire::Writer().u8(static_cast<uint8_t>(Op::Bye)).take(), Deadline::after(kReplyTimeout));
  } catch (const net::SocketError&) {
  }
  fd_.reset();
}

}  // namespace ringlink
