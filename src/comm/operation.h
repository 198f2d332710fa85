// An operation the engine runs: a non-blocking state machine over transport requests.
#pragma once

#include <memory>
#include <span>

#include "transport.h"

namespace ringlink::algo {
class StagingPool;
}

namespace ringlink::detail {

// Tags: user point-to-point tags live below 2^39; the engine gives every collective a block of
// 2^kOpTagBits tags above that, numbered by the collective's sequence number (which wraps).
inline constexpr int kOpTagBits = 20;
inline constexpr Tag kUserTagLimit = Tag{1} << (kTagBits - 1);
inline Tag collective_tag_base(uint64_t collective_seq) {
  constexpr Tag kBlocks = Tag{1} << (kTagBits - 1 - kOpTagBits);
  return kUserTagLimit | ((collective_seq & (kBlocks - 1)) << kOpTagBits);
}
// The last tag of a collective's block carries its signature (algo::with_signature); the
// schedules keep their tags below it.
inline constexpr Tag kSignatureTag = (Tag{1} << kOpTagBits) - 1;

// What an operation may use while it runs, only on the thread driving the engine: messages to
// its peers, tagged within the operation's own block of tags, and the staging slots.
class OpContext {
 public:
  OpContext(std::span<const std::unique_ptr<Connection>> connections, Tag tag_base, algo::StagingPool& staging,
            int rank = -1)
      : connections_(connections), tag_base_(tag_base), staging_(staging), rank_(rank) {}

  // `tag` numbers the message within the operation: below 2^kOpTagBits for a collective, the
  // user's tag for point-to-point (whose block starts at 0).
  std::unique_ptr<Request> isend(int peer, const void* buf, size_t bytes, MemoryRegion* mr, Tag tag) const {
    return connection(peer).isend(buf, bytes, mr, tag_base_ + tag);
  }
  std::unique_ptr<Request> irecv(int peer, void* buf, size_t bytes, MemoryRegion* mr, Tag tag) const {
    return connection(peer).irecv(buf, bytes, mr, tag_base_ + tag);
  }
  // The communicator's staging slots (collectives run one at a time, so one pool serves them).
  algo::StagingPool& staging() const { return staging_; }
  // This rank (for the errors an operation raises); -1 where the caller did not say.
  int rank() const { return rank_; }
  // The collective's number, as far as its tag block tells it (it wraps with the blocks).
  uint64_t collective_seq() const { return (tag_base_ & ~kUserTagLimit) >> kOpTagBits; }

 private:
  Connection& connection(int peer) const { return *connections_[static_cast<size_t>(peer)]; }

  std::span<const std::unique_ptr<Connection>> connections_;  // by peer (none at the own rank)
  Tag tag_base_;
  algo::StagingPool& staging_;
  int rank_;
};

// What one advance() achieved. The engine fails an operation that stays at Waiting for longer
// than Options::timeout (the silence deadline) and restarts that clock whenever it Moved.
enum class Progress {
  Waiting,  // nothing completed, was posted or was combined
  Moved,
  Done,
};

class Operation {
 public:
  virtual ~Operation() = default;
  virtual const char* name() const = 0;
  // Point-to-point operations start at once and run beside everything else; collectives run
  // one after another in issue order.
  virtual bool is_point_to_point() const { return false; }
  // Called once when the operation becomes active.
  virtual void start(const OpContext& ctx) = 0;
  // Advances without blocking. Throws ringlink::Error on failure.
  virtual Progress advance(const OpContext& ctx) = 0;
  // The peer the operation is waiting for (named when the silence deadline passes), or -1.
  virtual int waiting_on() const { return -1; }
};

}  // namespace ringlink::detail
