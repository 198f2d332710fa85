#include "algorithms/tree.h"

#include <algorithm>
#include <cstring>
#include <deque>

#include "reduce/reduce.h"

namespace ringlink::algo {
namespace {

struct Part {
  TreeNode node;
  Range range;  // elements this tree carries
  size_t chunks = 1;
};

class TreeOp final : public detail::Operation {
 public:
  TreeOp(TreeMode mode, Args args, int rank, int size, std::vector<Part> parts, size_t chunk_bytes, int depth)
      : mode_(mode), a_(args), rank_(rank), n_(size), parts_(std::move(parts)), depth_(depth) {
    size_t chunk_elems = std::max<size_t>(1, chunk_bytes / a_.elem());
    size_t tag_space = size_t{1} << detail::kOpTagBits;
    for (auto& p : parts_) {
      p.chunks = std::max<size_t>(1, (p.range.size() + chunk_elems - 1) / chunk_elems);
      p.chunks = std::min(p.chunks, (tag_space - 1) / (2 * parts_.size()));
      max_chunks_ = std::max(max_chunks_, p.chunks);
    }
  }

  const char* name() const override {
    switch (mode_) {
      case TreeMode::AllReduce: return "allreduce";
      case TreeMode::Reduce: return "reduce";
      case TreeMode::Broadcast: return "broadcast";
    }
    return "tree";
  }
  int waiting_on() const override { return waiting_on_; }

  void start(const detail::OpContext& ctx) override {
    pool_ = &ctx.staging();
    // A chain holds at most two slots (one per child).
    depth_ = std::max(1, std::min(depth_, pool_->available() / (2 * static_cast<int>(parts_.size()))));
    if (mode_ == TreeMode::Broadcast && rank_ == a_.root && a_.recv != a_.send && a_.count)
      std::memcpy(a_.recv, a_.send, a_.count * a_.elem());
    for (size_t p = 0; p < parts_.size(); ++p) next_chunk_.push_back(0);
    total_chains_ = 0;
    for (auto& p : parts_) total_chains_ += p.range.size() ? p.chunks : 0;
  }

  detail::Progress advance(const detail::OpContext& ctx) override {
    bool moved = true, any = false;
    while (moved) {
      moved = false;
      for (size_t p = 0; p < parts_.size(); ++p) {
        if (parts_[p].range.size() == 0) continue;
        while (active_in_part(p) < depth_ && next_chunk_[p] < parts_[p].chunks) {
          active_.emplace_back(p, next_chunk_[p]++);
          moved = true;
        }
      }
      for (auto it = active_.begin(); it != active_.end();) {
        if (step_chain(ctx, *it)) moved = true;
        if (it->finished) {
          it = active_.erase(it);
          ++chains_done_;
          moved = true;
        } else {
          ++it;
        }
      }
      any = any || moved;
    }
    if (chains_done_ == total_chains_) return detail::Progress::Done;
    return any ? detail::Progress::Moved : detail::Progress::Waiting;
  }

 private:
  enum class Phase { PostUp, WaitUp, PostDown, WaitDown, Drain };
  struct Chain {
    Chain(size_t p, size_t chunk) : part(p), c(chunk) {}
    size_t part;
    size_t c;
    Phase phase = Phase::PostUp;
    std::unique_ptr<Request> recvs[2];
    int slots[2] = {-1, -1};
    std::unique_ptr<Request> down_recv;
    std::deque<PendingSend> sends;
    bool finished = false;
  };

  int active_in_part(size_t p) const {
    int k = 0;
    for (auto& ch : active_) k += ch.part == p;
    return k;
  }
  Tag tag(size_t part, int phase, size_t c) const {
    return (part * 2 + static_cast<size_t>(phase)) * max_chunks_ + c;
  }
  bool is_root(const Part& p) const { return p.node.parent < 0; }

  bool step_chain(const detail::OpContext& ctx, Chain& ch) {
    const Part& part = parts_[ch.part];
    const Range r = sub(part.range, part.chunks, ch.c);
    const size_t bytes = r.size() * a_.elem();
    const std::byte* in = a_.send ? a_.send + r.begin * a_.elem() : nullptr;
    std::byte* out = a_.recv ? a_.recv + r.begin * a_.elem() : nullptr;
    const auto& kids = part.node.children;
    bool moved = false;

    if (ch.phase == Phase::PostUp) {
      if (mode_ == TreeMode::Broadcast) {
        ch.phase = Phase::PostDown;
      } else {
        // One slot per child, all or nothing.
        if (pool_->available() < static_cast<int>(kids.size())) return false;
        for (size_t i = 0; i < kids.size(); ++i) {
          ch.slots[i] = pool_->acquire();
          ch.recvs[i] = post_recv(ctx, kids[i], pool_->at(ch.slots[i]), bytes, tag(ch.part, 0, ch.c), pool_->mr());
        }
        ch.phase = Phase::WaitUp;
      }
      moved = true;
    }
    if (ch.phase == Phase::WaitUp) {
      for (size_t i = 0; i < kids.size(); ++i) {
        if (!done(ch.recvs[i])) {
          waiting_on_ = kids[i];
          return moved;
        }
      }
      // Combine in child order (a fixed order: every run reduces identically).
      const std::byte* acc = in;
      int acc_slot = -1;
      std::byte* dst = nullptr;
      if (!kids.empty()) {
        if (mode_ == TreeMode::AllReduce || is_root(part)) {
          dst = out;  // allreduce keeps partials in the output; reduce's root writes its result
        } else {
          dst = pool_->at(ch.slots[0]);  // reduce, interior: the partial lives in a slot
          acc_slot = ch.slots[0];
          ch.slots[0] = -1;
        }
        for (size_t i = 0; i < kids.size(); ++i) {
          if (bytes) reduce::combine(dst, acc, pool_->at(ch.slots[i] >= 0 ? ch.slots[i] : acc_slot), r.size(), a_.type,
                                     a_.op);
          acc = dst;
        }
        for (size_t i = 0; i < kids.size(); ++i) {
          pool_->release(ch.slots[i]);
          ch.slots[i] = -1;
        }
      } else if (is_root(part) && out != in && bytes) {
        std::memcpy(out, in, bytes);  // a lone root (n == 1)
        acc = out;
      }
      if (is_root(part)) {
        if (a_.op == ReduceOp::Avg && bytes) reduce::divide(out, r.size(), a_.type, n_);
        ch.phase = mode_ == TreeMode::AllReduce ? Phase::PostDown : Phase::Drain;
      } else {
        ch.sends.push_back(PendingSend{post_send(ctx, part.node.parent, acc, bytes, tag(ch.part, 0, ch.c),
                                                 acc_slot >= 0 ? pool_->mr() : nullptr),
                                       acc_slot});
        ch.phase = mode_ == TreeMode::AllReduce ? Phase::PostDown : Phase::Drain;
      }
      moved = true;
    }
    if (ch.phase == Phase::PostDown) {
      if (!is_root(part)) ch.down_recv = post_recv(ctx, part.node.parent, out, bytes, tag(ch.part, 1, ch.c));
      ch.phase = Phase::WaitDown;
      moved = true;
    }
    if (ch.phase == Phase::WaitDown) {
      if (!done(ch.down_recv)) {
        waiting_on_ = part.node.parent;
        return moved;
      }
      const std::byte* src = (mode_ == TreeMode::Broadcast && is_root(part)) ? in : out;
      for (int kid : kids) ch.sends.push_back(PendingSend{post_send(ctx, kid, src, bytes, tag(ch.part, 1, ch.c)), -1});
      ch.phase = Phase::Drain;
      moved = true;
    }
    if (ch.phase == Phase::Drain) {
      while (!ch.sends.empty() && done(ch.sends.front().req)) {
        pool_->release(ch.sends.front().slot);
        ch.sends.pop_front();
        moved = true;
      }
      if (ch.sends.empty()) ch.finished = true;
    }
    return moved;
  }

  TreeMode mode_;
  Args a_;
  int rank_, n_;
  std::vector<Part> parts_;
  int depth_;
  size_t max_chunks_ = 1;
  std::vector<size_t> next_chunk_;
  size_t chains_done_ = 0, total_chains_ = 0;
  StagingPool* pool_ = nullptr;
  std::deque<Chain> active_;
  int waiting_on_ = -1;
};

}  // namespace

std::unique_ptr<detail::Operation> make_tree_allreduce(const Args& args, int rank, int size, size_t chunk_bytes,
                                                       int depth) {
  std::vector<Part> parts;
  for (int t = 0; t < 2; ++t) parts.push_back(Part{double_tree_node(size, rank, t), split(args.count, 2, t)});
  return std::make_unique<TreeOp>(TreeMode::AllReduce, args, rank, size, std::move(parts), chunk_bytes, depth);
}

std::unique_ptr<detail::Operation> make_tree_reduce(const Args& args, int rank, int size, TreeShape shape,
                                                    size_t chunk_bytes, int depth) {
  std::vector<Part> parts{Part{rooted_tree_node(shape, size, rank, args.root), Range{0, args.count}}};
  return std::make_unique<TreeOp>(TreeMode::Reduce, args, rank, size, std::move(parts), chunk_bytes, depth);
}

std::unique_ptr<detail::Operation> make_tree_broadcast(const Args& args, int rank, int size, TreeShape shape,
                                                       size_t chunk_bytes, int depth) {
  std::vector<Part> parts{Part{rooted_tree_node(shape, size, rank, args.root), Range{0, args.count}}};
  return std::make_unique<TreeOp>(TreeMode::Broadcast, args, rank, size, std::move(parts), chunk_bytes, depth);
}

}  // namespace ringlink::algo
