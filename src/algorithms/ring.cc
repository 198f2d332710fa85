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
#include <stdexcept>

#include "algorithms/chain_pipeline.h"

namespace ringlink::algo {
namespace {

class RingOp final : public detail::Operation {
 public:
  RingOp(RingMode mode, Args args, int rank, int size, size_t chunk_bytes, int depth)
      : mode_(mode), a_(args), rank_(rank), n_(size), depth_(depth), pipeline_(args.type, args.op, size, args.device, args.wire) {
    rs_steps_ = mode != RingMode::AllGather ? n_ - 1 : 0;
    ag_steps_ = mode != RingMode::ReduceScatter ? n_ - 1 : 0;
    steps_ = rs_steps_ + ag_steps_;
    // Segment boundaries: allreduce splits `count`; the others have one block of `count` per rank.
    total_ = mode == RingMode::AllReduce ? a_.count : a_.count * static_cast<size_t>(n_);
    size_t max_seg = 0;
    for (int i = 0; i < n_; ++i) max_seg = std::max(max_seg, segment(i).size());
    // Chunks are sized by what goes on the wire (a compressed format carries twice the elements).
    size_t chunk_elems = std::max<size_t>(1, chunk_bytes / pipeline_.wire_elem_bytes());
    chunks_ = std::max<size_t>(1, (max_seg + chunk_elems - 1) / chunk_elems);
    // Every (step, chunk) pair needs its own tag.
    size_t tag_space = size_t{1} << detail::kOpTagBits;
    chunks_ = std::min(chunks_, (tag_space - 1) / static_cast<size_t>(steps_));
  }

  const char* name() const override {
    switch (mode_) {
      case RingMode::AllReduce: return "allreduce";
      case RingMode::ReduceScatter: return "reduce_scatter";
      case RingMode::AllGather: return "allgather";
    }
    return "ring";
  }
  int waiting_on() const override { return prev(); }

  void start(const detail::OpContext& ctx) override {
    if (mode_ == RingMode::AllGather) {
      // Own block into place; in place it is there already.
      std::byte* own = output(rank_, segment(rank_));
      pipeline_.copy_local(own, a_.send, a_.count * a_.elem());
    }
    if (total_ == 0) return;
    // Each active chain may hold three slots: receiving step k+1, sending step k+1's source,
    // and a send of step k still draining.
    pipeline_.start(ctx.staging(), {chunks_}, depth_, 3);
  }

  detail::Progress advance(const detail::OpContext& ctx) override {
    if (total_ == 0) return detail::Progress::Done;
    return pipeline_.advance(ctx, [this](ChainPipeline::Chain& ch) { return step(ch); });
  }

 private:
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
  int next() const { return mod(rank_ + 1, n_); }
  int prev() const { return mod(rank_ - 1, n_); }

  // Chain `ch.index()` through the steps. Its stage is 0 before step 0's send, then k + 1 while
  // step k's receive is posted or due. Returns whether anything moved.
  bool step(ChainPipeline::Chain& ch) {
    const size_t c = ch.index();
    bool moved = false;
    if (ch.stage == 0) {
      // Step 0's source is local: the contribution (reduce-scatter) or the own block (allgather).
      int s = send_seg(0);
      Range r = chunk(s, c);
      if (rs_steps_ > 0)
        pipeline_.send(ch, next(), tag(0, c), input(r), r.size());
      else
        pipeline_.send(ch, next(), tag(0, c), output(s, r), r.size());
      ch.stage = 1;
      moved = true;
    }
    const int k = ch.stage - 1;
    const int seg = recv_seg(k);
    const Range r = chunk(seg, c);
    const bool reduce_step = k < rs_steps_;
    if (!pipeline_.receiving(ch)) {
      if (reduce_step) {
        if (!pipeline_.receive_to_combine(ch, prev(), tag(k, c), r.size())) return moved;  // no slot free
      } else {
        pipeline_.receive_into(ch, prev(), tag(k, c), output(seg, r), r.size());
      }
      moved = true;
    }
    if (!pipeline_.arrived(ch)) return moved;
    ChunkBuffer got = pipeline_.take(ch)[0];

    // Step k's data is here: combine it, then send it on as step k+1.
    ChunkBuffer forward = got;
    if (reduce_step && k < rs_steps_ - 1) {
      pipeline_.combine(got.data, input(r), got, r.size());
    } else if (reduce_step) {
      // Last reduce-scatter step: this rank's own segment, complete.
      forward = pipeline_.complete(output(seg, r), input(r), got, r.size());
    }
    if (k + 1 < steps_) {
      pipeline_.send(ch, next(), tag(k + 1, c), forward, r.size());
      ch.stage = k + 2;
    } else {
      pipeline_.release(forward);
      pipeline_.close(ch);
    }
    return true;
  }

  RingMode mode_;
  Args a_;
  int rank_, n_, depth_;
  int rs_steps_ = 0, ag_steps_ = 0, steps_ = 0;
  size_t total_ = 0;
  size_t chunks_ = 1;
  ChainPipeline pipeline_;
};

}  // namespace

std::unique_ptr<detail::Operation> make_ring(RingMode mode, const Args& args, int rank, int size, size_t chunk_bytes,
                                             int depth) {
  if (size < 2) throw std::invalid_argument("a ring needs two ranks or more");
  return std::make_unique<RingOp>(mode, args, rank, size, chunk_bytes, depth);
}

}  // namespace ringlink::algo
