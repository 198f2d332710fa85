// The engine's inline path: a small collective driven on the caller's thread from start to
// finish, when the engine is idle. An 8-byte allreduce is then one message exchange and the
// loop that waits for it; the queue, the work state and the progress thread stay out of it.
#include "comm/engine.h"

namespace ringlink::detail {

bool Engine::run_inline(Operation& op) {
  if (has_work()) return false;
  std::unique_lock drive(drive_mu_, std::try_to_lock);
  // Work submitted meanwhile goes first: collectives keep their issue order.
  if (!drive.owns_lock() || has_work() || abort_flag_.load(std::memory_order_acquire)) return false;
  if (broken_) std::rethrow_exception(broken_);

  const OpContext ctx(connections_, collective_tag_base(next_collective_seq_++), *pool_, rank());
  std::exception_ptr error;
  try {
    op.start(ctx);
    // The clock is read every kClockEvery idle turns, not every turn: a clock read costs as
    // much as a turn, and the silence deadline is counted in milliseconds.
    constexpr int kClockEvery = 64;
    Clock::time_point last_progress = Clock::now();
    bool moved = false;
    int idle = 0;
    for (;;) {
      if (transport_) transport_->progress();
      const Progress p = op.advance(ctx);
      if (p == Progress::Done) break;
      if (p == Progress::Moved) {
        moved = true;
        idle = 0;
        continue;
      }
      if (++idle % kClockEvery == 0) {
        if (abort_flag_.load(std::memory_order_acquire)) {
          error = take_watcher_verdict();
          break;
        }
        const auto now = Clock::now();
        if (moved) {
          last_progress = now;
          moved = false;
        } else if (now - last_progress > options_.timeout) {
          raise_silence(op);
        }
      }
      idle_pause(idle);
    }
  } catch (...) {
    error = fail_from(std::current_exception());
  }
  drive.unlock();
  // What other threads submitted meanwhile is the progress thread's.
  if (has_work()) hand_back_to_progress_thread();
  if (error) std::rethrow_exception(error);
  return true;
}

}  // namespace ringlink::detail
