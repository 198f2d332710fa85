// Rendezvous store: a key-value service on rank 0 (set / get / wait / add, each with a deadline),
// plus a watch channel per communicator that reports ranks which die.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/socket.h"

namespace ringlink {

struct StoreIdentity {
  std::string host;
  int port = 0;
  std::string token;
  int rank = -1;
  int world_size = -1;
  uint32_t epoch = 0;
};

// The server. Runs one thread with a poll loop; lives while a local communicator holds it and
// any rank is still connected (see acquire()).
class StoreServer {
 public:
  // Binds host:port (port 0: any) and starts serving. Throws on bind failure.
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

// A rank's request channel. Thread-safe. Errors are typed ringlink::Error naming this rank,
// the operation and rank 0 (the store's host) or the rank a wait concerns.
class StoreClient {
 public:
  StoreClient(StoreIdentity id, Deadline connect_deadline);
  ~StoreClient();

  void set(const std::string& key, const std::string& value);
  // Waits until `key` exists; TimeoutError after `timeout`.
  std::string get(const std::string& key, milliseconds timeout);
  bool check(const std::string& key);
  int64_t add(const std::string& key, int64_t delta);
  // Waits until every rank has joined this epoch; the timeout error names the missing ranks.
  void wait_for_all_ranks(milliseconds timeout);

  // A store-based barrier named `name` (used once per name).
  void barrier(const std::string& name, milliseconds timeout);

  const StoreIdentity& identity() const { return id_; }

 private:
  std::string request(const std::string& payload, const char* operation, milliseconds server_wait);
  StoreIdentity id_;
  net::Fd fd_;
  std::mutex mu_;
};

// A rank's watch channel: readable when the server pushes an event.
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
