// Asynchronous events (a QP's fatal or access error, a port going down, a CQ overrun) arrive
// through the context's async_fd. A thread sleeps in poll() on it and queues what it reads, so
// progress costs no system call: the transport looks only when pending() says there is news.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs {

// What the transport needs of an event once it has been acknowledged.
struct AsyncEvent {
  ibv_event_type type;
  uint32_t qp_num = 0;
  int port = 0;
};

class AsyncEventReader {
 public:
  // Starts the thread; `context` must outlive the reader.
  AsyncEventReader(const VerbsApi& api, ibv_context* context);
  ~AsyncEventReader();
  AsyncEventReader(const AsyncEventReader&) = delete;
  AsyncEventReader& operator=(const AsyncEventReader&) = delete;

  bool pending() const { return pending_.load(std::memory_order_acquire); }
  std::vector<AsyncEvent> take();

 private:
  void run();

  const VerbsApi& api_;
  ibv_context* context_;
  int stop_fd_ = -1;
  std::mutex mu_;
  std::vector<AsyncEvent> events_;
  std::atomic<bool> pending_{false};
  std::thread thread_;
};

}  // namespace ringlink::verbs
