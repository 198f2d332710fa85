// Ring schedules: reduce-scatter, allgather, and allreduce as the one followed by the other.
//
// Rank r sends to r+1 and receives from r-1. The data is cut into one segment per rank and
// each segment into C chunks; chunk c of every segment forms a chain of steps that travels the
// ring independently of the other chunks, so while one chain's chunk is being reduced, others
// are on the wire. At most `depth` chains are active at once (bounded staging memory).
//
// Reduce-scatter step k (0 <= k < n-1): send segment r-k-1, receive segment r-k-2 into a
// staging slot and combine it with the local contribution. After the last step rank r holds the
// full reduction of segment r. Allgather step s: send segment r-s, receive segment r-s-1 into
// place. Step k of a chain sends what step k-1 of the same chain received.
#include "algorithms/ring.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include <fmt/format.h>

#include "algorithms/common.h"
#include "reduce/reduce.h"
#include "ringlink/error.h"

namespace ringlink::algo {
namespace {

class RingOp final : public detail::Operation {
 public:
  RingOp(RingMode mode, Args args, int rank, int size, size_t chunk_bytes, int depth)
      : mode_(mode), a_(args), rank_(rank), n_(size), depth_(depth) {
    rs_steps_ = mode != RingMode::AllGather ? n_ - 1 : 0;
    ag_steps_ = mode != RingMode::ReduceScatter ? n_ - 1 : 0;
    steps_ = rs_steps_ + ag_steps_;
    // Segment boundaries: allreduce splits `count`; the others have one block of `count` per rank.
    total_ = mode == RingMode::AllReduce ? a_.count : a_.count * static_cast<size_t>(n_);
    size_t max_seg = 0;
    for (int i = 0; i < n_; ++i) max_seg = std::max(max_seg, segment(i).size());
    size_t chunk_elems = std::max<size_t>(1, chunk_bytes / a_.elem());
    chunks_ = std::max<size_t>(1, (max_seg + chunk_elems - 1) / chunk_elems);
    // Every (step, chunk) pair needs its own tag.
    size_t tag_space = size_t{1} << detail::kOpTagBits;
    if (steps_ > 0) chunks_ = std::min(chunks_, (tag_space - 1) / static_cast<size_t>(steps_));
  }

  const char* name() const override {
    switch (mode_) {
      case RingMode::AllReduce: return "allreduce";
      case RingMode::ReduceScatter: return "reduce_scatter";
      case RingMode::AllGather: return "allgather";
    }
    return "ring";
  }
  int waiting_on() const override { return mod(rank_ - 1, n_); }

  void start(const detail::OpContext& ctx) override {
    if (mode_ == RingMode::AllGather) {
      // Own block into place; in place it is there already.
      std::byte* own = output(rank_, segment(rank_));
      if (own != a_.send && a_.count) std::memcpy(own, a_.send, a_.count * a_.elem());
    }
    if (steps_ == 0 || total_ == 0) {
      if (mode_ != RingMode::AllGather && total_ > 0) finish_local();  // n == 1
      return;
    }
    pool_ = &ctx.staging();
    // Each active chain may hold three slots: receiving step k+1, sending step k+1's source,
    // and a send of step k still draining.
    depth_ = std::max(1, std::min(depth_, pool_->available() / 3));
  }

  detail::Progress advance(const detail::OpContext& ctx) override {
    if (steps_ == 0 || total_ == 0) return detail::Progress::Done;
    bool moved = true, any = false;
    while (moved) {
      moved = false;
      while (static_cast<int>(active_.size()) < depth_ && next_chain_ < chunks_) {
        active_.emplace_back(next_chain_++);
        begin_chain(ctx, active_.back());
        moved = true;
      }
      for (auto it = active_.begin(); it != active_.end();) {
        if (step_chain(ctx, *it)) moved = true;
        if (it->finished()) {
          it = active_.erase(it);
          ++chains_done_;
          moved = true;
        } else {
          ++it;
        }
      }
      any = any || moved;
    }
    if (chains_done_ == chunks_) return detail::Progress::Done;
    return any ? detail::Progress::Moved : detail::Progress::Waiting;
  }

 private:
  struct Chain {
    explicit Chain(size_t chunk) : c(chunk) {}
    size_t c;
    int step = 0;  // the step whose receive is outstanding; == steps_ when all received
    std::unique_ptr<Request> recv;
    int recv_slot = -1;
    bool recv_posted = false;
    std::deque<PendingSend> sends;
    bool all_done = false;
    bool finished() const { return all_done; }
  };

  Range segment(int i) const {
    if (mode_ == RingMode::AllReduce) return split(a_.count, static_cast<size_t>(n_), static_cast<size_t>(i));
    return Range{static_cast<size_t>(i) * a_.count, static_cast<size_t>(i + 1) * a_.count};
  }
  // Chunk c of segment i, in elements of the whole vector.
  Range chunk(int seg, size_t c) const { return sub(segment(seg), chunks_, c); }

  // reduce_scatter and allreduce read the rank's contribution at the element's own offset.
  const std::byte* input(Range r) const { return a_.send + r.begin * a_.elem(); }
  std::byte* output(int seg, Range r) const {
    if (mode_ == RingMode::ReduceScatter) return a_.recv + (r.begin - segment(seg).begin) * a_.elem();
    return a_.recv + r.begin * a_.elem();
  }
  Tag tag(int step, size_t c) const { return static_cast<Tag>(step) * chunks_ + c; }
  int send_seg(int k) const { return k < rs_steps_ ? mod(rank_ - k - 1, n_) : mod(rank_ - (k - rs_steps_), n_); }
  int recv_seg(int k) const {
    return k < rs_steps_ ? mod(rank_ - k - 2, n_) : mod(rank_ - (k - rs_steps_) - 1, n_);
  }

  void finish_local() {
    // n == 1: the result is the input.
    if (a_.recv != a_.send) std::memcpy(a_.recv, a_.send, total_ * a_.elem());
  }

  void begin_chain(const detail::OpContext& ctx, Chain& ch) {
    // Step 0's source is local: the contribution (reduce-scatter) or the own block (allgather).
    int s = send_seg(0);
    Range r = chunk(s, ch.c);
    const std::byte* src = rs_steps_ > 0 ? input(r) : output(s, r);
    ch.sends.push_back(PendingSend{post_send(ctx, next(), src, r.size() * a_.elem(), tag(0, ch.c)), -1});
  }

  int next() const { return mod(rank_ + 1, n_); }
  int prev() const { return mod(rank_ - 1, n_); }

  // Returns true if anything moved.
  bool step_chain(const detail::OpContext& ctx, Chain& ch) {
    bool moved = false;
    // Retire completed sends in order, returning their slots.
    while (!ch.sends.empty() && done(ch.sends.front().req)) {
      pool_->release(ch.sends.front().slot);
      ch.sends.pop_front();
      moved = true;
    }
    if (ch.step >= steps_) {
      ch.all_done = ch.sends.empty();
      return moved;
    }
    const int k = ch.step;
    const Range r = chunk(recv_seg(k), ch.c);
    const size_t bytes = r.size() * a_.elem();
    const bool reduce_step = k < rs_steps_;
    if (!ch.recv_posted) {
      if (reduce_step && bytes > 0) {
        ch.recv_slot = pool_->acquire();
        if (ch.recv_slot < 0) return moved;  // wait for a slot
        ch.recv = post_recv(ctx, prev(), pool_->at(ch.recv_slot), bytes, tag(k, ch.c), pool_->mr());
      } else {
        ch.recv = post_recv(ctx, prev(), output(recv_seg(k), r), bytes, tag(k, ch.c));
      }
      ch.recv_posted = true;
      moved = true;
    }
    if (!done(ch.recv)) return moved;
    ch.recv.reset();
    ch.recv_posted = false;

    // Data for step k is here: combine, then forward it as step k+1's send.
    const int seg = recv_seg(k);
    const std::byte* forward = nullptr;
    int forward_slot = -1;
    if (reduce_step) {
      std::byte* slot = ch.recv_slot >= 0 ? pool_->at(ch.recv_slot) : nullptr;
      if (k < rs_steps_ - 1) {
        if (bytes) reduce::combine(slot, input(r), slot, r.size(), a_.type, a_.op);
        forward = slot;
        forward_slot = ch.recv_slot;
      } else {
        // Last reduce-scatter step: this rank's own segment, complete.
        std::byte* out = output(seg, r);
        if (bytes) reduce::combine(out, input(r), slot, r.size(), a_.type, a_.op);
        if (a_.op == ReduceOp::Avg) reduce::divide(out, r.size(), a_.type, n_);
        pool_->release(ch.recv_slot);
        forward = out;
      }
      ch.recv_slot = -1;
    } else {
      forward = output(seg, r);
    }
    ch.step = k + 1;
    if (k + 1 < steps_) {
      // What step k received (and combined) is what step k+1 sends.
      ch.sends.push_back(PendingSend{post_send(ctx, next(), forward, bytes, tag(k + 1, ch.c),
                                               forward_slot >= 0 ? pool_->mr() : nullptr),
                                     forward_slot});
    } else {
      pool_->release(forward_slot);
    }
    return true;
  }

  RingMode mode_;
  Args a_;
  int rank_, n_, depth_;
  int rs_steps_ = 0, ag_steps_ = 0, steps_ = 0;
  size_t total_ = 0;
  size_t chunks_ = 1;
  size_t next_chain_ = 0, chains_done_ = 0;
  StagingPool* pool_ = nullptr;
  std::deque<Chain> active_;
};

}  // namespace

std::unique_ptr<detail::Operation> make_ring(RingMode mode, const Args& args, int rank, int size, size_t chunk_bytes,
                                             int depth) {
  return std::make_unique<RingOp>(mode, args, rank, size, chunk_bytes, depth);
}

}  // namespace ringlink::algo
