// The Work a ringlink operation returns to torch, and the thread that completes the Futures of
// operations nobody waits on.
//
// A torch operation becomes one or more ringlink operations (a coalesced call: one per tensor),
// plus, for list forms, a copy of the result into the caller's tensors once they succeed. The
// Work settles exactly once, on whichever thread sees the ringlink operations finish first: the
// caller in wait() or isCompleted(), or the backend's completion thread. Settling copies the
// results out, then completes the Work and its Future (DDP's Reducer waits on the Future).
//
// wait() waits on the ringlink operations themselves, never on the completion thread: that
// thread completes Futures in issue order, and a point-to-point receive issued earlier may finish
// later than a send the caller is waiting on.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>

#include <ringlink/communicator.h>

#include "torch_compat.h"

namespace ringlink_torch {

class RinglinkWork final : public c10d::Work {
 public:
  // `outputs`: what result() and the Future's value hold (the tensors the caller reads).
  RinglinkWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs);

  // Building the work, before it is handed out: the ringlink operations it waits for, tensors
  // that must live until then (inputs, staging), and the copy-out to run once all succeed.
  void add(ringlink::Work w) { parts_.push_back(std::move(w)); }
  void keep_alive(at::Tensor t) { keep_.push_back(std::move(t)); }
  void on_success(std::function<void()> fn) { on_success_ = std::move(fn); }

  bool isCompleted() override;
  bool wait(std::chrono::milliseconds timeout = kNoTimeout) override;
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override;
  std::vector<at::Tensor> result() override;

  // For the completion thread: returns once the work is settled, by this thread or another.
  void settle_when_done();

 private:
  // Completes the Work and the Future once; a second caller waits for the first to finish.
  void settle(std::exception_ptr error);

  std::vector<ringlink::Work> parts_;
  std::vector<at::Tensor> outputs_;
  std::vector<at::Tensor> keep_;
  std::function<void()> on_success_;
  std::atomic<bool> settling_{false};
  c10::intrusive_ptr<c10::ivalue::Future> future_;
};

// One thread per backend: settles works in issue order so their Futures complete (and their
// callbacks run) without anyone calling wait(). It watches for completion with short sleeps
// (5 us doubling to 500 us) rather than waiting inside ringlink.
class CompletionThread {
 public:
  CompletionThread();
  ~CompletionThread();  // settles what is queued (each bounded by its deadline), then joins
  CompletionThread(const CompletionThread&) = delete;
  CompletionThread& operator=(const CompletionThread&) = delete;

  void push(c10::intrusive_ptr<RinglinkWork> w);

 private:
  // Shared with the thread, which may outlive this object (see the destructor).
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<c10::intrusive_ptr<RinglinkWork>> queue;
    bool stopping = false;
  };
  static void run(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace ringlink_torch
