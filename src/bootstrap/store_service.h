// The rendezvous store's logic without its sockets: the handshake, the key-value requests with
// their waits, the epochs, heartbeats and liveness. StoreServer (store_server.h) feeds it what
// arrives and sends what it produces; the fuzz target (tests/fuzz/store_fuzz.cc) feeds it
// whatever the fuzzer invents.
//
// The service never calls out: it answers into an outbox that the caller drains with
// take_output() after each call. A connection it closes is forgotten at once, so nothing it
// does later can touch that connection's state (replies to it are dropped).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bootstrap/store_protocol.h"
#include "common/clock.h"

namespace ringlink {

class StoreService {
 public:
  struct Config {
    std::string token;
    int world_size = 1;
    // Silence after which a watch channel's rank is declared unreachable, and the period of
    // the store's heartbeats (store_protocol::heartbeat_period of it).
    milliseconds liveness_timeout{10000};
    // Fills nonces; the store's cryptographic generator unless a test or the fuzzer sets one.
    std::function<std::string(size_t)> random;
  };
  explicit StoreService(Config config);
  ~StoreService();
  StoreService(const StoreService&) = delete;
  StoreService& operator=(const StoreService&) = delete;

  // What arrives. Connection ids are the caller's; `peer` names it in messages ("ip:port").
  void on_open(int conn, std::string peer, Clock::time_point now);
  void on_frame(int conn, std::string_view payload, Clock::time_point now);
  void on_closed(int conn, Clock::time_point now);  // the peer closed, or sending to it failed
  void on_tick(Clock::time_point now);              // deadlines: waits, handshakes, heartbeats

  // What to do: send `payload` as a frame to `conn`, and close it after (`close`), in order.
  struct Output {
    int conn;
    std::string payload;  // empty with close: nothing to send first
    bool close = false;
  };
  std::vector<Output> take_output();

  // The largest frame `conn` may send next: small until its handshake is done.
  size_t frame_limit(int conn) const;
  // When on_tick has something to do next (Clock::time_point::max(): nothing).
  Clock::time_point next_deadline() const;
  // Connections that completed the handshake, and all the service knows of.
  size_t joined_connections() const;
  size_t connections() const;
  bool any_failed() const;

 private:
  struct Conn;
  struct Epoch;
  struct Waiter;
  void handle_hello(int id, Conn& c, std::string_view payload, wire::Reader& r, Clock::time_point now);
  void handle_proof(int id, Conn& c, store_protocol::Op op, wire::Reader& r, Clock::time_point now);
  void admit(int id, Clock::time_point now);
  void handle_request(int id, store_protocol::Op op, wire::Reader& r, Clock::time_point now);
  // Why the rank on `c` may not write `key` (too long, or not its key); nullopt when it may.
  std::optional<std::string> write_refusal(const Conn& c, const std::string& key, bool add) const;
  // Stores `value` under `key`, keeping the byte counts; false (nothing stored) when the store is full.
  bool store_value(Epoch& ep, const std::string& key, std::string value);
  void handle_set(int id, wire::Reader& r);
  void handle_add(int id, wire::Reader& r);
  void handle_barrier(int id, wire::Reader& r, Clock::time_point now);
  void send(int id, std::string payload);
  void refuse(int id, const store_protocol::Failure& failure);  // reply Failed, then close
  void close_conn(int id, std::string_view why);
  void fail_epoch(uint32_t epoch, const store_protocol::Failure& failure);
  // Replies `payload` to the epoch's waiters that `match` picks, and forgets them.
  void answer_waiters(uint32_t epoch, const std::function<bool(const Waiter&)>& match, const std::string& payload);
  void satisfy_join_waiters(uint32_t epoch);
  void satisfy_get_waiters(uint32_t epoch, const std::string& key, const std::string& value);
  void satisfy_barrier(uint32_t epoch, const std::string& name);
  void expire_waiters(Clock::time_point now);
  void check_liveness(Clock::time_point now);
  void retire_if_unused(uint32_t epoch);
  std::string roster_reply(const Epoch& ep) const;
  std::vector<int> missing_ranks(const std::set<int>& present) const;

  Config config_;
  milliseconds heartbeat_period_;
  std::map<int, Conn> conns_;
  std::vector<Waiter> waiters_;
  std::map<uint32_t, Epoch> epochs_;
  // Failures of epochs whose connections are all gone: a rank arriving late still hears why.
  std::map<uint32_t, store_protocol::Failure> failed_epochs_;
  size_t stored_bytes_ = 0;
  std::vector<Output> out_;
};

}  // namespace ringlink
