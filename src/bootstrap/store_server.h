// The rendezvous store's server: rank 0 serves the store (its logic is StoreService,
// store_service.h) to every rank over TCP, from one thread with a poll loop.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"

namespace ringlink {

// Lives while a local communicator holds it and any rank is still connected (see acquire()).
class StoreServer {
 public:
  // Binds host:port (port 0: any) and starts serving. Throws net::SocketError on bind failure.
  // liveness_timeout: how long a rank's watch channel may stay silent before the store
  // declares the rank unreachable.
  StoreServer(const std::string& bind_host, int port, std::string token, int world_size,
              milliseconds liveness_timeout = milliseconds(10000));
  ~StoreServer();  // waits (bounded by drain_timeout) for connected ranks to leave, then stops
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const;
  // How long the destructor waits for connected ranks to leave; after a failed job at most
  // kFailedDrain of it, so survivors exit promptly.
  void set_drain_timeout(milliseconds t);
  static constexpr milliseconds kFailedDrain{250};

  // The process-wide server for `port`, started on first use; shared by every communicator
  // that rank 0 creates on that port.
  static std::shared_ptr<StoreServer> acquire(const std::string& bind_host, int port, const std::string& token,
                                              int world_size, milliseconds liveness_timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringlink
