// A rank's watch channel to the rendezvous store: open for the communicator's lifetime. The
// store pushes events on it (a rank died or fell silent, the job failed) and heartbeats; the
// rank pings it as often (ping()). Closing it without bye() is how the store learns that this
// rank died; silence either way, past the liveness timeout, is how each side learns that the
// other's host or link is down. Used by one thread (the engine's watcher).
#pragma once

#include <optional>
#include <string>

#include "bootstrap/store_channel.h"
#include "bootstrap/wire.h"
#include "common/clock.h"
#include "common/socket.h"
#include "ringlink/error.h"

namespace ringlink {

class WatchChannel {
 public:
  WatchChannel(const StoreIdentity& id, Deadline connect_deadline);
  ~WatchChannel();
  int fd() const { return fd_.get(); }

  struct Event {
    enum class Kind { Lost, Failed, Closed } what = Kind::Lost;
    ErrorKind error = ErrorKind::PeerLost;  // Lost and Failed: the failure's kind
    int rank = -1;                          // the rank it concerns
    std::string message;
  };
  // Reads what has arrived without blocking: the next event, or nullopt once nothing complete
  // is left (heartbeats only refresh last_heard()). A closed or garbled channel is a Closed
  // event naming rank 0 (the store's host), after which the channel is closed.
  std::optional<Event> receive();
  // Waits for the next event until `deadline` (tests); nullopt at the deadline.
  std::optional<Event> read_event(Deadline deadline);

  // This rank's heartbeat; false when it could not be sent (the channel is then left to the
  // store's silence detection).
  bool ping();
  void bye();  // clean exit: the server will not report this rank as lost

  // The heartbeat period, and the silence after which the store counts as unreachable: this
  // rank's liveness timeout, or four of the store's heartbeat periods if that is longer.
  milliseconds ping_period() const { return ping_period_; }
  milliseconds silence_limit() const { return silence_limit_; }
  Clock::time_point last_heard() const { return last_heard_; }

 private:
  Event closed(const std::string& why);
  StoreIdentity id_;
  net::Fd fd_;
  wire::FrameReader frames_{64 * 1024};  // events are short
  milliseconds ping_period_;
  milliseconds silence_limit_;
  Clock::time_point last_heard_;
  bool ping_broken_ = false;
};

}  // namespace ringlink
