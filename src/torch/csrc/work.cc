#include "work.h"

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
  if (error) {
    future_->setError(error);
  } else {
    future_->markCompleted(c10::IValue(outputs_));
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

void RinglinkWork::wait_and_settle() {
  std::exception_ptr error;
  for (ringlink::Work& p : parts_) {
    try {
      p.wait();
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
  settle(error);
}

c10::intrusive_ptr<c10::ivalue::Future> RinglinkWork::getFuture() { return future_; }

std::vector<at::Tensor> RinglinkWork::result() { return outputs_; }

// ---- CompletionThread ------------------------------------------------------------------------

CompletionThread::CompletionThread() : thread_([this] { run(); }) {}

CompletionThread::~CompletionThread() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CompletionThread::push(c10::intrusive_ptr<RinglinkWork> w) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(std::move(w));
  }
  cv_.notify_one();
}

void CompletionThread::run() {
  for (;;) {
    c10::intrusive_ptr<RinglinkWork> w;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is settled
      w = std::move(queue_.front());
      queue_.pop_front();
    }
    w->wait_and_settle();
  }
}

}  // namespace ringlink_torch
