// The rendezvous store's server: a key-value service on rank 0 (set / get / wait / add, each
// with a deadline) that also watches every rank's watch channel and reports the ranks that die.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"

namespace ringlink {

// Runs one thread with a poll loop; lives while a local communicator holds it and any rank is
// still connected (see acquire()).
class StoreServer {
 public:
  // Binds host:port (port 0: any) and starts serving. Throws net::SocketError on bind failure.
  StoreServer(const std::string& bind_host, int port, std::string token, int world_size);
  ~StoreServer();  // waits (bounded by drain_timeout) for connected ranks to leave, then stops
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const;
  void set_drain_timeout(milliseconds t);

  // The process-wide server for `port`, started on first use; shared by every communicator
  // that rank 0 creates on that port.
  static std::shared_ptr<StoreServer> acquire(const std::string& bind_host, int port, const std::string& token,
                                              int world_size);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringlink
