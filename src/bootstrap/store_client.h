// A rank's request channel to the rendezvous store: set / get / check / add, the join wait,
// a barrier and a failure report, each bounded by a deadline. Keys follow store_keys.h: a rank
// writes only rank/<its rank>/... keys and count/... counters.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "bootstrap/store_channel.h"
#include "common/clock.h"
#include "common/socket.h"

namespace ringlink {

// Thread-safe. Errors are typed ringlink::Error naming this rank, the operation and rank 0
// (the store's host) or the rank the failure concerns (a missing, lost or misconfigured one).
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
  // Then hosts() holds each rank's address as the store saw it.
  void wait_for_all_ranks(milliseconds timeout);
  const std::vector<std::string>& hosts() const { return hosts_; }

  // Waits until every rank has reached the barrier named `name` (used once per name); the
  // timeout error names the ranks that did not.
  void barrier(const std::string& name, milliseconds timeout);

  // Fails the job: the store pushes this failure to every rank's watch channel (the first
  // failure of a job wins; later reports are acknowledged and dropped). `culprit`: the rank at
  // fault, -1 for none.
  void report_failure(const std::string& message, int culprit = -1, ErrorKind kind = ErrorKind::Mismatch);

 private:
  // Sends one request and returns the reply's bytes; the server may hold a wait for `server_wait`.
  std::string request(const std::string& payload, const char* operation, milliseconds server_wait);
  StoreIdentity id_;
  net::Fd fd_;
  std::vector<std::string> hosts_;
  std::mutex mu_;
};

}  // namespace ringlink
