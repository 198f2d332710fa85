// A rank's watch channel to the rendezvous store: open for the communicator's lifetime, it
// becomes readable when the server pushes an event (a rank died, the job failed). Closing it
// without bye() is how the server learns that this rank died.
#pragma once

#include <string>

#include "bootstrap/store_channel.h"
#include "common/clock.h"
#include "common/socket.h"

namespace ringlink {

class WatchChannel {
 public:
  WatchChannel(const StoreIdentity& id, Deadline connect_deadline);
  ~WatchChannel();
  int fd() const { return fd_.get(); }

  struct Event {
    bool lost = false;  // a rank died (else: the job failed, e.g. a mismatch)
    int rank = -1;
    std::string message;
  };
  // Reads one pushed event; a closed channel is reported as rank 0 lost.
  Event read_event();
  void bye();  // clean exit: the server will not report this rank as lost

 private:
  StoreIdentity id_;
  net::Fd fd_;
};

}  // namespace ringlink
