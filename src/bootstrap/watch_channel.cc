#include "bootstrap/watch_channel.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "bootstrap/store_protocol.h"

namespace ringlink {

using namespace store_protocol;

WatchChannel::WatchChannel(const StoreIdentity& id, Deadline connect_deadline)
    : id_(id), ping_period_(heartbeat_period(id.liveness_timeout)) {
  OpenedChannel opened = open_store_channel(id_, Channel::Watch, connect_deadline, "watch channel");
  fd_ = std::move(opened.fd);
  silence_limit_ = store_protocol::silence_limit(id_.liveness_timeout, opened.store_heartbeat);
  last_heard_ = Clock::now();
}

WatchChannel::~WatchChannel() = default;

WatchChannel::Event WatchChannel::closed(const std::string& why) {
  fd_.reset();
  Event ev;
  ev.what = Event::Kind::Closed;
  ev.rank = 0;
  ev.message = fmt::format("rank 0 exited or was killed (its rendezvous store at {}:{} closed: {})", id_.host,
                           id_.port, why);
  return ev;
}

std::optional<WatchChannel::Event> WatchChannel::receive() {
  if (!fd_.valid()) return std::nullopt;
  for (;;) {
    try {
      while (auto frame = frames_.next()) {
        last_heard_ = Clock::now();
        wire::Reader r(*frame);
        Pushed pushed = read_pushed(r);
        if (pushed.event == store_protocol::Event::Heartbeat) continue;
        Event ev;
        ev.what = pushed.event == store_protocol::Event::Lost ? Event::Kind::Lost : Event::Kind::Failed;
        ev.error = pushed.kind;
        ev.rank = pushed.rank;
        ev.message = std::move(pushed.message);
        return ev;
      }
    } catch (const wire::FormatError& e) {
      return closed(fmt::format("malformed event: {}", e.what()));
    }
    char buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      frames_.append({buf, static_cast<size_t>(n)});
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::nullopt;
    return closed(n == 0 ? "connection closed by peer" : std::strerror(errno));
  }
}

std::optional<WatchChannel::Event> WatchChannel::read_event(Deadline deadline) {
  for (;;) {
    if (auto ev = receive()) return ev;
    if (!fd_.valid() || deadline.expired()) return std::nullopt;
    pollfd p{fd_.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<int64_t>(deadline.remaining().count(), 100)));
  }
}

bool WatchChannel::ping() {
  if (!fd_.valid() || ping_broken_) return false;
  try {
    wire::send_frame(fd_.get(), wire::Writer().u8(static_cast<uint8_t>(Op::Ping)).take(),
                     Deadline::after(milliseconds(200)));
    return true;
  } catch (const net::SocketError&) {
    // The store has not read for a long while, or the connection broke. A partial frame may be
    // in the stream now: send nothing more, and let silence tell.
    ping_broken_ = true;
    return false;
  }
}

void WatchChannel::bye() {
  if (!fd_.valid()) return;
  try {
    if (!ping_broken_)
      wire::send_frame(fd_.get(), wire::Writer().u8(static_cast<uint8_t>(Op::Bye)).take(),
                       Deadline::after(milliseconds(200)));
  } catch (const net::SocketError&) {
  }
  fd_.reset();
}

}  // namespace ringlink
