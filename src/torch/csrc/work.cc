#include "work.h"

#include <algorithm>
#include <cstdio>

#include <ATen/core/jit_type.h>

#include "stream_order.h"

namespace ringlink_torch {

RinglinkWork::RinglinkWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
    : c10d::Work(rank, type),
      outputs_(std::move(outputs)),
      future_(c10::make_intrusive<c10::ivalue::Future>(c10::ListType::create(c10::TensorType::get()),
                                                       future_devices(outputs_))) {}

void RinglinkWork::settle(std::exception_ptr error) {
  bool expected = false;
  if (!settling_.compare_exchange_strong(expected, true)) {
    std::unique_lock lk(mutex_);
    cv_.wait(lk, [&] { return completed_; });
    return;
  }
  if (!error && on_success_) {
    try {
      on_success_();
    } catch (...) {
      error = std::current_exception();
    }
  }
  on_success_ = nullptr;
  keep_.clear();
  finish(error);
  try {
    // Completing the Future runs its callbacks here, whatever thread this is.
    if (error) {
      future_->setError(error);
    } else {
      future_->markCompleted(c10::IValue(outputs_));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringlink[%d] WARN: completing the Future of %s raised: %s\n", rank_,
                 c10d::opTypeToString(opType_).c_str(), e.what());
  }
}

bool RinglinkWork::isCompleted() {
  {
    std::lock_guard lk(mutex_);
    if (completed_) return true;
  }
  if (settling_.load()) return false;  // another thread is copying the results out
  std::exception_ptr error;
  for (ringlink::Work& p : parts_) {
    try {
      if (!p.test()) return false;
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  settle(error);
  return true;
}

bool RinglinkWork::wait(std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const bool bounded = timeout != kNoTimeout;
  const Clock::time_point deadline = Clock::now() + timeout;
  std::exception_ptr error;
  for (ringlink::Work& p : parts_) {
    try {
      if (bounded) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        p.wait(std::max(left, std::chrono::milliseconds(0)));
      } else {
        p.wait();
      }
    } catch (...) {
      // A TimeoutError of wait(timeout) itself leaves the operation running: report it, settle
      // nothing. An operation that failed is complete: remember its error, wait for the rest.
      if (!p.completed()) throw;
      if (!error) error = std::current_exception();
    }
  }
  settle(error);
  std::lock_guard lk(mutex_);
  if (exception_) std::rethrow_exception(exception_);
  return true;
}

void RinglinkWork::settle_when_done() {
  // Watches instead of waiting: a caller blocked in wait() drives the engine itself and the
  // progress thread does otherwise, so this thread only has to notice the end. A second thread
  // inside ringlink's wait (spinning, then yielding) would compete for the cores the ranks share.
  auto pause = std::chrono::microseconds(5);
  for (;;) {
    if (settling_.load()) return;  // a caller's wait() or isCompleted() got there first
    bool done = true;
    std::exception_ptr error;
    for (const ringlink::Work& p : parts_) {
      if (!p.completed()) {
        done = false;
        break;
      }
      if (!error) error = p.error();
    }
    if (done) {
      settle(error);
      return;
    }
    // Bounded: every ringlink operation completes or fails by its own deadline.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(500));
  }
}

c10::intrusive_ptr<c10::ivalue::Future> RinglinkWork::getFuture() { return future_; }

std::vector<at::Tensor> RinglinkWork::result() { return outputs_; }

// ---- CompletionThread ------------------------------------------------------------------------

CompletionThread::CompletionThread()
    : state_(std::make_shared<State>()), thread_([state = state_] { run(state); }) {}

CompletionThread::~CompletionThread() {
  {
    std::lock_guard lk(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_all();
  // A Future callback running on that thread may drop the last reference to the group: it cannot
  // join itself, so it finishes what is queued on its own, holding the state it shares.
  if (std::this_thread::get_id() == thread_.get_id()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void CompletionThread::push(c10::intrusive_ptr<RinglinkWork> w) {
  {
    std::lock_guard lk(state_->mu);
    state_->queue.push_back(std::move(w));
  }
  state_->cv.notify_one();
}

void CompletionThread::run(const std::shared_ptr<State>& state) {
  for (;;) {
    c10::intrusive_ptr<RinglinkWork> w;
    {
      std::unique_lock lk(state->mu);
      state->cv.wait(lk, [&] { return state->stopping || !state->queue.empty(); });
      if (state->queue.empty()) return;  // stopping, and everything queued is settled
      w = std::move(state->queue.front());
      state->queue.pop_front();
    }
    w->settle_when_done();
  }
}

}  // namespace ringlink_torch
