#include "algorithms/recursive_doubling.h"

#include <cstring>

#include "reduce/reduce.h"

namespace ringlink::algo {
namespace {

// Recursive doubling over the largest power of two p <= n. Ranks p..n-1 first hand their data
// to rank r-p and get the result back at the end. In each round partners combine as
// op(lower rank's value, higher rank's value), so both compute bitwise the same result.
class RecursiveDoubling final : public detail::Operation {
 public:
  RecursiveDoubling(Args a, int rank, int size) : a_(a), rank_(rank), n_(size) {
    p_ = 1;
    while (p_ * 2 <= n_) p_ *= 2;
    rounds_ = 0;
    for (int x = p_; x > 1; x >>= 1) ++rounds_;
  }
  const char* name() const override { return "allreduce"; }
  int waiting_on() const override { return partner_; }

  void start(const detail::OpContext& ctx) override {
    pool_ = &ctx.staging();
    bytes_ = a_.count * a_.elem();
    if (a_.recv != a_.send && bytes_) std::memcpy(a_.recv, a_.send, bytes_);
    slot_ = pool_->acquire();  // the engine guarantees one free slot for a lone collective
    stage_ = rank_ >= p_ ? Stage::ExtraSend : (rank_ < n_ - p_ ? Stage::FoldIn : Stage::Round);
  }

  detail::Progress advance(const detail::OpContext& ctx) override {
    moved_ = false;
    if (run(ctx)) return detail::Progress::Done;
    return moved_ ? detail::Progress::Moved : detail::Progress::Waiting;
  }

 private:
  enum class Stage { ExtraSend, FoldIn, Round, FoldOut, Done };

  // Runs stages until one waits (false) or the result is complete (true).
  bool run(const detail::OpContext& ctx) {
    for (;;) {
      switch (stage_) {
        case Stage::ExtraSend:  // rank >= p: give the data to rank - p, wait for the result
          partner_ = rank_ - p_;
          if (!posted_) {
            send_ = post_send(ctx, partner_, a_.recv, bytes_, tag(0));
            recv_ = post_recv(ctx, partner_, a_.recv, bytes_, tag(1 + rounds_));
            posted_ = true;
          }
          if (!done(send_) || !done(recv_)) return false;
          return finish();
        case Stage::FoldIn:  // rank < n - p: absorb rank + p's data first
          partner_ = rank_ + p_;
          if (!posted_) {
            recv_ = post_recv(ctx, partner_, pool_->at(slot_), bytes_, tag(0), pool_->mr());
            posted_ = true;
          }
          if (!done(recv_)) return false;
          if (bytes_) reduce::combine(a_.recv, a_.recv, pool_->at(slot_), a_.count, a_.type, a_.op);
          next(Stage::Round);
          break;
        case Stage::Round: {
          if (round_ == rounds_) {
            next(rank_ < n_ - p_ ? Stage::FoldOut : Stage::Done);
            break;
          }
          partner_ = rank_ ^ (1 << round_);
          if (!posted_) {
            recv_ = post_recv(ctx, partner_, pool_->at(slot_), bytes_, tag(1 + round_), pool_->mr());
            send_ = post_send(ctx, partner_, a_.recv, bytes_, tag(1 + round_));
            posted_ = true;
          }
          // The send reads our value: it must be out before the value changes.
          if (!done(recv_) || !done(send_)) return false;
          if (bytes_) {
            std::byte* mine = a_.recv;
            const std::byte* theirs = pool_->at(slot_);
            if (rank_ < partner_)
              reduce::combine(mine, mine, theirs, a_.count, a_.type, a_.op);
            else
              reduce::combine(mine, theirs, mine, a_.count, a_.type, a_.op);
          }
          ++round_;
          next(Stage::Round);
          break;
        }
        case Stage::FoldOut:
          partner_ = rank_ + p_;
          if (!posted_) {
            if (a_.op == ReduceOp::Avg && bytes_) reduce::divide(a_.recv, a_.count, a_.type, n_);
            averaged_ = true;
            send_ = post_send(ctx, partner_, a_.recv, bytes_, tag(1 + rounds_));
            posted_ = true;
          }
          if (!done(send_)) return false;
          return finish();
        case Stage::Done:
          return finish();
      }
    }
  }

  static Tag tag(int step) { return static_cast<Tag>(step); }
  void next(Stage s) {
    stage_ = s;
    posted_ = false;
    send_.reset();
    recv_.reset();
    moved_ = true;
  }
  bool finish() {
    // Extra ranks receive the finished (already averaged) result.
    if (!averaged_ && rank_ < p_ && a_.op == ReduceOp::Avg && bytes_) reduce::divide(a_.recv, a_.count, a_.type, n_);
    averaged_ = true;
    pool_->release(slot_);
    slot_ = -1;
    return true;
  }

  Args a_;
  int rank_, n_, p_, rounds_;
  int round_ = 0;
  int partner_ = -1;
  size_t bytes_ = 0;
  StagingPool* pool_ = nullptr;
  int slot_ = -1;
  Stage stage_ = Stage::Round;
  bool posted_ = false;
  bool averaged_ = false;
  bool moved_ = false;  // a stage finished during this advance()
  std::unique_ptr<Request> send_, recv_;
};

}  // namespace

std::unique_ptr<detail::Operation> make_recursive_doubling_allreduce(const Args& args, int rank, int size) {
  return std::make_unique<RecursiveDoubling>(args, rank, size);
}

}  // namespace ringlink::algo
