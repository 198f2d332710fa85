// An operation the engine runs: a non-blocking state machine over transport requests.
#pragma once

#include <memory>
#include <vector>

#include "common/clock.h"
#include "transport.h"

namespace ringlink::algo {
class StagingPool;
}

namespace ringlink::detail {

// Host memory for staging device buffers; grows on demand and is reused (collectives run one
// at a time, so one buffer serves them all).
class HostScratch {
 public:
  virtual ~HostScratch() = default;
  virtual std::byte* ensure(size_t bytes) = 0;
};

// What an operation may use while it runs (only on the thread driving the engine).
struct OpContext {
  int rank;
  int size;
  const Options& options;
  Transport* transport;  // null when size == 1
  std::vector<std::unique_ptr<Connection>>& connections;
  Tag tag_base;  // unique to this operation; add the operation's own step numbers below 2^kOpTagBits
  algo::StagingPool* staging;  // the communicator's staging slots (collectives run one at a time)
  HostScratch* scratch;        // host copies of device buffers

  Connection& peer(int p) const { return *connections[static_cast<size_t>(p)]; }
};

// Tags: user point-to-point tags live below 2^39; the engine gives every collective a block of
// 2^kOpTagBits tags above that, numbered by the operation's sequence number.
inline constexpr int kOpTagBits = 20;
inline constexpr Tag kUserTagLimit = Tag{1} << 39;

class Operation {
 public:
  virtual ~Operation() = default;
  virtual const char* name() const = 0;
  // Point-to-point operations start at once and run beside everything else; collectives run
  // one after another in issue order.
  virtual bool is_point_to_point() const { return false; }
  // Called once when the operation becomes active.
  virtual void start(OpContext& ctx) = 0;
  // Advances without blocking; true when done. Throws ringlink::Error on failure.
  virtual bool advance(OpContext& ctx) = 0;
  // The peer the operation is waiting for (named when the silence deadline passes), or -1.
  virtual int waiting_on() const { return -1; }

  // Last time a request of this operation completed; the engine fails the operation when a
  // peer stays silent longer than Options::timeout.
  Clock::time_point last_activity{};
  void touch() { last_activity = Clock::now(); }
};

}  // namespace ringlink::detail
