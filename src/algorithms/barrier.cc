#include "algorithms/barrier.h"

namespace ringlink::algo {
namespace {

// Dissemination barrier: in round k every rank signals rank + 2^k and waits for rank - 2^k.
// After ceil(log2 n) rounds every rank has (transitively) heard from every other.
class Barrier final : public detail::Operation {
 public:
  Barrier(int rank, int size) : rank_(rank), n_(size) {}
  const char* name() const override { return "barrier"; }
  int waiting_on() const override { return mod(rank_ - (1 << round_), n_); }
  void start(detail::OpContext&) override {}
  bool advance(detail::OpContext& ctx) override {
    while ((1 << round_) < n_) {
      int dist = 1 << round_;
      if (!posted_) {
        recv_ = ctx.peer(mod(rank_ - dist, n_)).irecv(&sink_, 0, nullptr, ctx.tag_base + static_cast<Tag>(round_));
        send_ = ctx.peer(mod(rank_ + dist, n_)).isend(&sink_, 0, nullptr, ctx.tag_base + static_cast<Tag>(round_));
        posted_ = true;
      }
      if (!recv_->test() || !send_->test()) return false;
      ++round_;
      posted_ = false;
      touch();
    }
    return true;
  }

 private:
  int rank_, n_;
  int round_ = 0;
  bool posted_ = false;
  char sink_ = 0;
  std::unique_ptr<Request> send_, recv_;
};

}  // namespace

std::unique_ptr<detail::Operation> make_barrier(int rank, int size) { return std::make_unique<Barrier>(rank, size); }

}  // namespace ringlink::algo
