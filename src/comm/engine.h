// The engine behind a Communicator: bootstrap, transport, connections, and the work queue
// with its progress thread.
//
// Driving: whoever holds drive_mu_ advances the operations. A caller blocked in Work::wait()
// drives the engine itself when nobody else does (no thread hand-off on the latency path);
// otherwise the progress thread drives asynchronous work until the queue is empty. Work a
// returning caller leaves behind is picked up by the progress thread's own polling (50 us to
// 1 ms), not by waking it: callers often wait again at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "algorithms/recursive_doubling.h"
#include "algorithms/select.h"
#include "algorithms/staging_pool.h"
#include "bootstrap/store.h"
#include "comm/device_staging.h"
#include "comm/operation.h"
#include "common/host_buffer.h"
#include "ringlink/communicator.h"
#include "transport.h"

namespace ringlink::detail {

struct WorkState {
  enum : int { Pending = 0, Done = 1, Failed = 2 };
  std::atomic<int> status{Pending};
  std::exception_ptr error;  // set before status becomes Failed
  std::unique_ptr<Operation> op;  // released on completion
  std::shared_ptr<Engine> engine;  // what Work::wait and Work::test drive; kept for the Work's lifetime
  uint64_t seq = 0;             // submission number (every operation), for messages
  uint64_t collective_seq = 0;  // number among the collectives: the same on every rank
  Clock::time_point submitted{};
  // Driver only: whether op->start() ran, and when the operation last moved (silence deadline).
  bool started = false;
  Clock::time_point last_progress{};
};

class Engine : public std::enable_shared_from_this<Engine> {
 public:
  // Joins the group: rendezvous, transport, connections, then starts the threads.
  static std::shared_ptr<Engine> create(Options options);
  ~Engine();

  // Fails outstanding work, says goodbye to the store and stops the threads.
  void shutdown();

  // `async`: wake the progress thread to drive it (a blocking caller drives it itself).
  std::shared_ptr<WorkState> submit(std::unique_ptr<Operation> op, bool async);
  // Waits for completion. With throw_at_deadline, a TimeoutError at `deadline` (the work goes on).
  void wait(WorkState& w, Deadline deadline, bool throw_at_deadline);
  bool test(WorkState& w);

  // The small-message path: runs a collective start to finish on the calling thread when
  // nothing else is queued or running, taking the next collective number as the queue would,
  // so it needs no work state, no queue and no hand-off. False, having done nothing, when the
  // engine is busy (the caller submits the operation instead); throws the operation's error.
  bool run_inline(Operation& op);
  // Message buffers for the inline path's recursive doubling, kept as long as the engine (a
  // transport may write into them after a failure).
  algo::RecursiveDoubling::Buffers* inline_buffers() { return inline_buffers_.get(); }

  int rank() const { return options_.rank; }
  int size() const { return options_.world_size; }
  const Options& options() const { return options_; }
  std::string transport_name() const;
  // Whether the transport takes memory of this kind directly (false when there is none).
  bool transport_supports(MemoryKind kind) const { return transport_ && transport_->supports(kind); }
  // Whether `p` may be device memory (cheap: false at once where there is no device at all).
  bool is_device_memory(const void* p);
  // The staging layer for device buffers, made on the first call (any thread); throws
  // InvalidArgumentError naming `op` where no device is usable.
  DeviceStaging& device_staging(const char* op);

  // Agreed by every rank at creation (rank 0's values win), so all ranks plan alike.
  size_t chunk_bytes() const { return chunk_bytes_; }
  Algorithm algorithm() const { return algorithm_; }
  const algo::LinkModel& cost_model() const { return model_; }
  size_t slot_bytes() const { return chunk_bytes_; }
  int pipeline_depth() const { return kPipelineDepth; }

  static constexpr size_t kDefaultChunkBytes = 512 * 1024;
  // While work is outstanding the progress thread looks whether a caller left some behind
  // (instead of being woken by every wait() that returns): first after kHandBackPollMin, then
  // twice as late each time it finds a caller still driving, up to kHandBackPollMax.
  static constexpr std::chrono::microseconds kHandBackPollMin{50};
  static constexpr std::chrono::microseconds kHandBackPollMax{1000};
  static constexpr int kStagingSlots = 16;
  static constexpr int kPipelineDepth = 4;

 private:
  explicit Engine(Options options);
  void join_group();
  std::shared_ptr<StoreServer> serve_store();
  void start_threads();
  void agree_on_plan_inputs();
  void allocate_staging();

  // One round: transport progress, admit submitted work, advance active operations.
  bool step();
  // Restarts the silence clock of work that moved; fails work silent for longer than the timeout.
  void watch_silence(WorkState& w, Progress p, Clock::time_point now);
  [[noreturn]] void raise_silence(Operation& op);
  template <typename Pred>
  void drive_until(Pred done, Deadline deadline);
  // After `idle` driver turns in a row that moved nothing: spin briefly (latency), then yield
  // the core, then sleep in short naps.
  void idle_pause(int idle) const;
  void progress_thread_main();
  void watcher_thread_main();
  // Fails everything with the watcher's first failure (later ones are its consequences).
  void abort_from_watcher(std::exception_ptr err, const std::string& message, int peer);
  std::string store_unreachable_message(Clock::duration silent) const;
  // The watcher's failure if it reports one within kWatcherVerdictGrace, else the transport's.
  std::exception_ptr prefer_watcher_verdict(std::exception_ptr transport_error);
  static constexpr milliseconds kWatcherVerdictGrace{300};
  // Waits up to `at_most` for the watcher to abort the communicator; true once it has.
  bool await_watcher_verdict(milliseconds at_most);
  // Reports and logs a failure of the running work, fails everything with it (or with the
  // watcher's verdict that explains it), and returns the error the work ends with.
  std::exception_ptr fail_from(std::exception_ptr error);
  // The watcher's verdict, once it has arrived, as the error of everything outstanding.
  std::exception_ptr take_watcher_verdict();
  void complete(const std::shared_ptr<WorkState>& w, std::exception_ptr error);
  void fail_everything(std::exception_ptr error);
  bool has_work();
  void wake_progress_thread();
  void hand_back_to_progress_thread();

  Options options_;
  uint32_t epoch_ = 0;
  std::shared_ptr<StoreServer> server_;  // rank 0 only
  std::unique_ptr<StoreClient> store_;
  std::unique_ptr<WatchChannel> watch_;
  std::unique_ptr<Transport> transport_;
  std::vector<std::unique_ptr<Connection>> connections_;

  size_t chunk_bytes_ = kDefaultChunkBytes;
  Algorithm algorithm_ = Algorithm::Auto;
  algo::LinkModel model_;
  HostBuffer staging_;
  std::shared_ptr<MemoryRegion> staging_mr_;
  std::unique_ptr<algo::StagingPool> pool_;
  std::unique_ptr<algo::RecursiveDoubling::Buffers> inline_buffers_;
  // Device buffers: the CUDA driver or, with RINGLINK_DEVICE_OPS=standin (tests), the host stand-in.
  enum class DeviceChoice { None, Cuda, Standin } device_choice_ = DeviceChoice::None;
  std::mutex device_mu_;
  std::unique_ptr<DeviceStaging> device_staging_;
  std::atomic<DeviceStaging*> device_ready_{nullptr};

  // Submission queue (any thread) -> active lists (driver only).
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<std::shared_ptr<WorkState>> submitted_;
  std::atomic<size_t> submitted_count_{0};
  bool stopping_ = false;
  bool async_pending_ = false;  // the progress thread has work to drive
  bool progress_sleeps_untimed_ = false;  // no work was outstanding when it went to sleep
  int spins_before_yield_ = 64;           // idle driver loops before sched_yield()
  uint64_t next_seq_ = 0;
  uint64_t next_collective_seq_ = 0;  // driver only

  std::mutex drive_mu_;
  std::deque<std::shared_ptr<WorkState>> collectives_;  // head is the active one
  std::vector<std::shared_ptr<WorkState>> p2p_;
  std::atomic<size_t> active_count_{0};
  std::exception_ptr broken_;  // first fatal error: every later operation fails with it

  // Completion notifications for callers that sleep in wait().
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::atomic<int> sleepers_{0};
  std::atomic<int> callers_waiting_{0};  // callers inside wait(): the progress thread steps aside
  std::atomic<bool> stopping_flag_{false};

  // Asynchronous failure reported by the watcher thread (a rank died or fell silent, the job
  // failed).
  std::mutex abort_mu_;
  std::exception_ptr abort_error_;
  std::atomic<bool> abort_flag_{false};

  std::thread progress_thread_;
  std::thread watcher_thread_;
  int watcher_stop_fd_ = -1;  // eventfd
  bool shut_down_ = false;
};

}  // namespace ringlink::detail
