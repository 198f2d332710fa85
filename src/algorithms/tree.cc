// Each tree's data is cut into chunks; chunk c of tree t is chain (t, c) of the chain pipeline.
// A chain reduces its chunk up the tree (receive every child's partial into a slot, combine
// them with the local contribution in child order, send the result to the parent) and, in an
// allreduce or broadcast, carries the finished chunk back down (receive it from the parent in
// place, send it to every child).
#include "algorithms/tree.h"

#include <algorithm>
#include <stdexcept>

#include "algorithms/chain_pipeline.h"

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
      : mode_(mode),
        a_(args),
        rank_(rank),
        parts_(std::move(parts)),
        depth_(depth),
        pipeline_(args.type, args.op, size, args.device) {
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
  int waiting_on() const override { return pipeline_.waiting_on(); }

  void start(const detail::OpContext& ctx) override {
    if (mode_ == TreeMode::Broadcast && rank_ == a_.root) pipeline_.copy_local(a_.recv, a_.send, a_.count * a_.elem());
    std::vector<size_t> chains;
    for (auto& p : parts_) chains.push_back(p.range.size() ? p.chunks : 0);
    // A chain holds at most two slots (one per child).
    pipeline_.start(ctx.staging(), std::move(chains), depth_, 2);
  }

  detail::Progress advance(const detail::OpContext& ctx) override {
    return pipeline_.advance(ctx, [this](ChainPipeline::Chain& ch) { return step(ch); });
  }

 private:
  // A chain's stages.
  enum Stage : int { Up, WaitUp, Down, WaitDown };

  Tag tag(size_t part, int direction, size_t c) const {
    return (part * 2 + static_cast<size_t>(direction)) * max_chunks_ + c;
  }
  static bool is_root(const Part& p) { return p.node.parent < 0; }

  // Returns whether anything moved.
  bool step(ChainPipeline::Chain& ch) {
    const size_t p = static_cast<size_t>(ch.group()), c = ch.index();
    const Part& part = parts_[p];
    const Range r = sub(part.range, part.chunks, c);
    const size_t count = r.size();
    const std::byte* in = a_.send ? a_.send + r.begin * a_.elem() : nullptr;
    std::byte* out = a_.recv ? a_.recv + r.begin * a_.elem() : nullptr;
    const auto& kids = part.node.children;
    bool moved = false;

    if (ch.stage == Up) {
      if (mode_ == TreeMode::Broadcast) {
        ch.stage = Down;
      } else {
        if (!pipeline_.receive_to_combine(ch, kids, tag(p, 0, c), count)) return false;  // no slots free
        ch.stage = WaitUp;
      }
      moved = true;
    }
    if (ch.stage == WaitUp) {
      if (!pipeline_.arrived(ch)) return moved;
      std::span<const ChunkBuffer> partials = pipeline_.take(ch);
      if (partials.empty()) {
        pipeline_.send(ch, part.node.parent, tag(p, 0, c), in, count);  // a leaf
      } else {
        // Combine in child order (a fixed order: every run reduces identically). Allreduce keeps
        // the partial in the output, and reduce's root writes its result there; an interior node
        // of a reduce keeps it in the first child's slot.
        ChunkBuffer acc = (mode_ == TreeMode::AllReduce || is_root(part)) ? ChunkBuffer{out} : partials[0];
        const std::byte* local = in;
        for (const ChunkBuffer& partial : partials) {
          pipeline_.combine(acc.data, local, partial, count);
          local = acc.data;
        }
        for (ChunkBuffer partial : partials)
          if (partial.slot != acc.slot) pipeline_.release(partial);
        if (is_root(part))
          pipeline_.finish_reduction(out, count);
        else
          pipeline_.send(ch, part.node.parent, tag(p, 0, c), acc, count);
      }
      if (mode_ == TreeMode::AllReduce) {
        ch.stage = Down;
      } else {
        pipeline_.close(ch);
        return true;
      }
      moved = true;
    }
    if (ch.stage == Down) {
      if (!is_root(part)) pipeline_.receive_into(ch, part.node.parent, tag(p, 1, c), out, count);
      ch.stage = WaitDown;
      moved = true;
    }
    if (ch.stage == WaitDown) {
      if (!pipeline_.arrived(ch)) return moved;
      pipeline_.take(ch);
      const std::byte* src = (mode_ == TreeMode::Broadcast && is_root(part)) ? in : out;
      for (int kid : kids) pipeline_.send(ch, kid, tag(p, 1, c), src, count);
      pipeline_.close(ch);
      moved = true;
    }
    return moved;
  }

  TreeMode mode_;
  Args a_;
  int rank_;
  std::vector<Part> parts_;
  int depth_;
  size_t max_chunks_ = 1;
  ChainPipeline pipeline_;
};

void require_two_ranks(int size) {
  if (size < 2) throw std::invalid_argument("a tree schedule needs two ranks or more");
}

}  // namespace

std::unique_ptr<detail::Operation> make_tree_allreduce(const Args& args, int rank, int size, size_t chunk_bytes,
                                                       int depth) {
  require_two_ranks(size);
  std::vector<Part> parts;
  for (int t = 0; t < 2; ++t) parts.push_back(Part{double_tree_node(size, rank, t), split(args.count, 2, t)});
  return std::make_unique<TreeOp>(TreeMode::AllReduce, args, rank, size, std::move(parts), chunk_bytes, depth);
}

std::unique_ptr<detail::Operation> make_tree_reduce(const Args& args, int rank, int size, TreeShape shape,
                                                    size_t chunk_bytes, int depth) {
  require_two_ranks(size);
  std::vector<Part> parts{Part{rooted_tree_node(shape, size, rank, args.root), Range{0, args.count}}};
  return std::make_unique<TreeOp>(TreeMode::Reduce, args, rank, size, std::move(parts), chunk_bytes, depth);
}

std::unique_ptr<detail::Operation> make_tree_broadcast(const Args& args, int rank, int size, TreeShape shape,
                                                       size_t chunk_bytes, int depth) {
  require_two_ranks(size);
  std::vector<Part> parts{Part{rooted_tree_node(shape, size, rank, args.root), Range{0, args.count}}};
  return std::make_unique<TreeOp>(TreeMode::Broadcast, args, rank, size, std::move(parts), chunk_bytes, depth);
}

}  // namespace ringlink::algo
