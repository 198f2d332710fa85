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
  void start(const detail::OpContext&) override {}
  detail::Progress advance(const detail::OpContext& ctx) override {
    bool moved = false;
    while ((1 << round_) < n_) {
      int dist = 1 << round_;
      if (!posted_) {
        recv_ = ctx.irecv(mod(rank_ - dist, n_), &sink_, 0, nullptr, static_cast<Tag>(round_));
        send_ = ctx.isend(mod(rank_ + dist, n_), &sink_, 0, nullptr, static_cast<Tag>(round_));
        posted_ = true;
      }
      if (!recv_->test() || !send_->test()) return moved ? detail::Progress::Moved : detail::Progress::Waiting;
      ++round_;
      posted_ = false;
      moved = true;
    }
    return detail::Progress::Done;
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
