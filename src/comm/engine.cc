#include "comm/engine.h"

#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>

#include <fmt/format.h>

#include "bootstrap/store_keys.h"
#include "bootstrap/wire.h"
#include "comm/plan_inputs.h"
#include "common/cuda_driver.h"
#include "common/log.h"
#include "common/socket.h"
#include "ringlink/error.h"

namespace ringlink::detail {
namespace {

std::atomic<uint32_t> g_next_epoch{0};

}  // namespace

Engine::Engine(Options options) : options_(std::move(options)) {
  // With more local ranks than cores the rank a waiter needs is often descheduled: spinning
  // only burns the time slice it needs, so idle drivers yield at once.
  cpu_set_t cpus;
  int cores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 0;
  if (cores > 0 && options_.local_world_size > cores) spins_before_yield_ = 0;
  if (options_.device_standin_seed >= 0)
    device_choice_ = DeviceChoice::Standin;
  else if (cuda::available())
    device_choice_ = DeviceChoice::Cuda;
}

bool Engine::is_device_memory(const void* p) {
  switch (device_choice_) {
    case DeviceChoice::None: return false;
    case DeviceChoice::Cuda: return cuda::is_device_pointer(p);
    case DeviceChoice::Standin: return device_staging("device check").ops().owns(p);
  }
  return false;
}

DeviceStaging& Engine::device_staging(const char* op) {
  if (DeviceStaging* ready = device_ready_.load(std::memory_order_acquire)) return *ready;
  std::lock_guard lk(device_mu_);
  if (!device_staging_) {
    std::string why = "no CUDA device";
    std::unique_ptr<DeviceOps> ops;
    if (device_choice_ == DeviceChoice::Standin) {
      // The seed picks the completion order; ranks differ by default.
      const auto seed = static_cast<uint64_t>(options_.device_standin_seed);
      ops = make_standin_device_ops(seed * 1000003u + static_cast<uint64_t>(rank()));
    } else if (device_choice_ == DeviceChoice::Cuda) {
      ops = make_cuda_device_ops(&why);
    } else {
      why = cuda::unavailable_reason();
    }
    if (!ops) throw InvalidArgumentError(rank(), -1, op, fmt::format("device memory, but no usable GPU: {}", why));
    try {
      device_staging_ = std::make_unique<DeviceStaging>(std::move(ops), transport_.get(), chunk_bytes_, kStagingSlots);
    } catch (const std::runtime_error& e) {
      throw TransportError(rank(), -1, op, fmt::format("allocating the device staging slots: {}", e.what()));
    }
    log::info("device buffers: {} staging, chunks {} through {}", device_staging_->ops().name(),
              device_staging_->wire_on_device() ? "on the wire from device memory" : "pinned host slots",
              transport_name());
  }
  device_ready_.store(device_staging_.get(), std::memory_order_release);
  return *device_staging_;
}

std::shared_ptr<Engine> Engine::create(Options options) {
  options.validate();
  log::set_rank(options.rank);
  if (options.log_level > LogLevel::Warn || !log::enabled(LogLevel::Info)) log::set_level(options.log_level);
  std::shared_ptr<Engine> e(new Engine(std::move(options)));
  e->join_group();
  e->agree_on_plan_inputs();
  e->allocate_staging();
  e->start_threads();
  return e;
}

Engine::~Engine() { shutdown(); }

void Engine::join_group() {
  epoch_ = g_next_epoch.fetch_add(1);
  const int rank = options_.rank, size = options_.world_size;
  if (size == 1) return;  // nothing to connect: collectives are local copies
  auto t0 = Clock::now();
  Deadline deadline = Deadline::after(options_.connect_timeout);

  if (rank == 0) {
    if (options_.job_token_derived) {
      static std::once_flag warned;
      std::call_once(warned, [&] {
        log::warn("RINGLINK_JOB_TOKEN is not set: the job token is derived from the {} job id, MASTER_ADDR and "
                  "MASTER_PORT, which anyone who can reach the store can guess. Export the same secret as "
                  "RINGLINK_JOB_TOKEN on every rank to keep others out.",
                  to_string(options_.launcher));
      });
    }
    server_ = serve_store();
  }
  StoreIdentity id{options_.master_addr, options_.master_port, options_.job_token, rank, size, epoch_,
                   options_.liveness_timeout};
  store_ = std::make_unique<StoreClient>(id, deadline);
  store_->wait_for_all_ranks(deadline.remaining());
  watch_ = std::make_unique<WatchChannel>(id, deadline);

  TransportSetup setup{rank, size, options_.local_rank, options_.local_world_size, options_};
  transport_ = create_transport(setup);

  // Two phases so no rank waits on a peer that is itself waiting: publish, then connect. Each
  // rank writes its addresses under its own keys, which no other rank may overwrite.
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    auto info = transport_->endpoint_info(p);
    store_->set(store_keys::owned(rank, fmt::format("ep/{}", p)),
                std::string(reinterpret_cast<const char*>(info.data()), info.size()));
  }
  connections_.resize(static_cast<size_t>(size));
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    std::string info;
    try {
      info = store_->get(store_keys::owned(p, fmt::format("ep/{}", rank)), deadline.remaining());
    } catch (const TimeoutError&) {
      throw TimeoutError(rank, p, "connect", fmt::format("rank {} never published its transport address", p));
    }
    connections_[static_cast<size_t>(p)] =
        transport_->connect(p, std::span(reinterpret_cast<const std::byte*>(info.data()), info.size()));
  }
  store_->barrier("connected", deadline.remaining());
  log::info("communicator ready: rank {} of {}, transport {}, joined in {:.1f} ms", rank, size, transport_->name(),
            ms_since(t0));
}

std::shared_ptr<StoreServer> Engine::serve_store() {
  // Bind where MASTER_ADDR points, not every interface: the other ranks reach the store there
  // and nobody needs it anywhere else.
  const int size = options_.world_size;
  std::string bind;
  try {
    bind = net::resolve_ipv4(options_.master_addr);
  } catch (const net::SocketError& e) {
    throw InvalidArgumentError(0, -1, "bootstrap", fmt::format("MASTER_ADDR={}: {}", options_.master_addr, e.what()));
  }
  if (net::is_loopback_ipv4(bind) && options_.local_world_size < size)
    throw InvalidArgumentError(
        0, -1, "bootstrap",
        fmt::format("MASTER_ADDR={} resolves to {} on rank 0, a loopback address, but ranks run on other hosts "
                    "(LOCAL_WORLD_SIZE={} of WORLD_SIZE={}): set MASTER_ADDR to an address they can reach",
                    options_.master_addr, bind, options_.local_world_size, size));
  try {
    return StoreServer::acquire(bind, options_.master_port, options_.job_token, size, options_.liveness_timeout);
  } catch (const net::SocketError& e) {
    throw TransportError(0, -1, "bootstrap",
                         fmt::format("cannot serve the rendezvous store on {}:{} (MASTER_ADDR={}; rank 0 must run on "
                                     "that host, and the port must be free): {}",
                                     bind, options_.master_port, options_.master_addr, e.what()));
  }
}

void Engine::agree_on_plan_inputs() {
  chunk_bytes_ = options_.chunk_bytes ? options_.chunk_bytes : kDefaultChunkBytes;
  algorithm_ = options_.algorithm;
  if (transport_) {
    LinkProperties link = transport_->properties();
    model_.latency_us = link.latency_us;
    model_.bandwidth_gbps = link.bandwidth_gbps;
    model_.rd_max_bytes = algo::recursive_doubling_limit(link);
  }
  if (!store_) return;
  // Chunk sizes decide message sizes and the model decides algorithms: a rank that disagreed
  // would post receives that match nothing. Rank 0's values are used everywhere.
  PlanInputs mine{algorithm_, chunk_bytes_, model_};
  const std::string key = store_keys::owned(0, "plan-inputs");
  if (rank() == 0) store_->set(key, encode(mine));
  std::string agreed_bytes = store_->get(key, options_.connect_timeout);
  if (agreed_bytes == encode(mine)) return;
  PlanInputs agreed{};
  try {
    agreed = decode_plan_inputs(agreed_bytes);
  } catch (const wire::FormatError& e) {
    throw InvalidArgumentError(rank(), 0, "create communicator",
                               fmt::format("rank 0's plan inputs are malformed: {}", e.what()));
  }
  log::warn("RINGLINK_ALGO / RINGLINK_CHUNK_BYTES / transport differ from rank 0's; using rank 0's ({} instead of {})",
            describe(agreed), describe(mine));
  algorithm_ = agreed.algorithm;
  chunk_bytes_ = agreed.chunk_bytes;
  model_ = agreed.model;
}

void Engine::allocate_staging() {
  staging_ = HostBuffer(chunk_bytes_ * kStagingSlots);
  if (transport_) staging_mr_ = transport_->register_memory(staging_.data(), staging_.size(), MemoryKind::Host);
  pool_ = std::make_unique<algo::StagingPool>(staging_.as<std::byte>(), chunk_bytes_, kStagingSlots, staging_mr_.get());
  if (size() > 1) inline_buffers_ = std::make_unique<algo::RecursiveDoubling::Buffers>();
}

void Engine::start_threads() {
  if (watch_) {
    watcher_stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    watcher_thread_ = std::thread([this] { watcher_thread_main(); });
  }
  progress_thread_ = std::thread([this] { progress_thread_main(); });
}

std::string Engine::transport_name() const { return transport_ ? transport_->name() : "local"; }

void Engine::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  {
    // Let outstanding work finish (bounded by its own silence deadline), then fail the rest.
    std::lock_guard g(drive_mu_);
    drive_until([&] { return !has_work(); }, Deadline::after(options_.timeout));
    if (has_work())
      fail_everything(std::make_exception_ptr(InvalidArgumentError(
          rank(), -1, "destroy communicator", "the communicator was destroyed with operations outstanding")));
  }
  {
    std::lock_guard lk(queue_mu_);
    stopping_ = true;
  }
  stopping_flag_.store(true);
  queue_cv_.notify_all();
  if (progress_thread_.joinable()) progress_thread_.join();
  if (watcher_thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(watcher_stop_fd_, &one, sizeof one);
    watcher_thread_.join();
  }
  if (watcher_stop_fd_ >= 0) ::close(watcher_stop_fd_);
  if (watch_) watch_->bye();
  connections_.clear();
  device_ready_.store(nullptr);
  device_staging_.reset();
  pool_.reset();
  staging_mr_.reset();
  transport_.reset();
  watch_.reset();
  store_.reset();
  server_.reset();
}

std::shared_ptr<WorkState> Engine::submit(std::unique_ptr<Operation> op, bool async) {
  auto w = std::make_shared<WorkState>();
  w->op = std::move(op);
  w->engine = shared_from_this();
  w->submitted = Clock::now();
  {
    std::lock_guard lk(queue_mu_);
    w->seq = next_seq_++;
    submitted_.push_back(w);
    submitted_count_.fetch_add(1, std::memory_order_release);
  }
  // A caller in wait() drives and hands leftover work back when it leaves.
  if (async && callers_waiting_.load() == 0) wake_progress_thread();
  return w;
}

bool Engine::has_work() {
  return submitted_count_.load(std::memory_order_acquire) > 0 || active_count_.load(std::memory_order_acquire) > 0;
}

void Engine::wake_progress_thread() {
  {
    std::lock_guard lk(queue_mu_);
    async_pending_ = true;
  }
  queue_cv_.notify_one();
}

void Engine::hand_back_to_progress_thread() {
  // Waking the thread here cost a thread switch per request for a caller that waits on many
  // requests one by one (streaming 1 MiB messages over shared memory: 5 switches per message,
  // 0.65x of UCX's own bandwidth). A thread that sleeps with work outstanding wakes within
  // kHandBackPollMax by itself; only an untimed sleep needs the signal.
  std::lock_guard lk(queue_mu_);
  async_pending_ = true;
  if (progress_sleeps_untimed_) queue_cv_.notify_one();
}

void Engine::complete(const std::shared_ptr<WorkState>& w, std::exception_ptr error) {
  w->op.reset();  // releases its requests while this thread still drives the transport
  if (error) {
    w->error = error;
    w->status.store(WorkState::Failed, std::memory_order_release);
  } else {
    w->status.store(WorkState::Done, std::memory_order_release);
  }
  active_count_.fetch_sub(1, std::memory_order_acq_rel);
  if (sleepers_.load(std::memory_order_acquire) > 0) {
    std::lock_guard lk(done_mu_);
    done_cv_.notify_all();
  }
}

void Engine::fail_everything(std::exception_ptr error) {
  if (!broken_) broken_ = error;
  // Admit what was submitted so it fails too.
  {
    std::lock_guard lk(queue_mu_);
    for (auto& w : submitted_) {
      active_count_.fetch_add(1, std::memory_order_acq_rel);
      collectives_.push_back(w);
    }
    submitted_.clear();
    submitted_count_.store(0, std::memory_order_release);
  }
  for (auto& w : p2p_) complete(w, broken_);
  p2p_.clear();
  for (auto& w : collectives_) complete(w, broken_);
  collectives_.clear();
}

bool Engine::step() {
  bool moved = transport_ ? transport_->progress() : false;
  // Point-to-point operations use the user's tags as they are.
  const OpContext p2p_ctx(connections_, 0, *pool_);

  if (submitted_count_.load(std::memory_order_acquire) > 0) {
    std::vector<std::shared_ptr<WorkState>> batch;
    {
      std::lock_guard lk(queue_mu_);
      batch.swap(submitted_);
      submitted_count_.store(0, std::memory_order_release);
    }
    for (auto& w : batch) {
      active_count_.fetch_add(1, std::memory_order_acq_rel);
      if (broken_) {
        complete(w, broken_);
      } else if (w->op->is_point_to_point()) {
        try {
          w->op->start(p2p_ctx);
          w->last_progress = Clock::now();
          p2p_.push_back(w);
        } catch (...) {
          complete(w, std::current_exception());  // bad arguments fail this work only
        }
      } else {
        // Collective tags come from this count, not from the submission number: ranks may issue
        // different numbers of point-to-point operations in between.
        w->collective_seq = next_collective_seq_++;
        collectives_.push_back(w);
      }
    }
    moved = true;
  }
  if (abort_flag_.load(std::memory_order_acquire)) {
    take_watcher_verdict();
    return true;
  }
  if (p2p_.empty() && collectives_.empty()) return moved;

  const auto now = Clock::now();
  try {
    for (size_t i = 0; i < p2p_.size();) {
      auto& w = p2p_[i];
      std::exception_ptr own_error;
      bool done = false;
      try {
        Progress p = w->op->advance(p2p_ctx);
        done = p == Progress::Done;
        if (!done) watch_silence(*w, p, now);
      } catch (const Error& e) {
        // A message that does not fit fails that receive only; the connection is intact.
        if (e.kind() != ErrorKind::Mismatch && e.kind() != ErrorKind::InvalidArgument) throw;
        own_error = std::current_exception();
      }
      if (done || own_error) {
        complete(w, own_error);
        p2p_[i] = std::move(p2p_.back());
        p2p_.pop_back();
        moved = true;
      } else {
        ++i;
      }
    }
    // Collectives run one at a time in issue order; each owns a block of tags by sequence number.
    while (!collectives_.empty()) {
      auto& w = collectives_.front();
      const OpContext ctx(connections_, collective_tag_base(w->collective_seq), *pool_, rank());
      if (!w->started) {
        w->started = true;
        w->op->start(ctx);  // its local copies are not silence
        w->last_progress = Clock::now();
      }
      Progress p = w->op->advance(ctx);
      if (p != Progress::Done) {
        watch_silence(*w, p, now);
        break;
      }
      complete(w, nullptr);
      collectives_.pop_front();
      moved = true;
    }
  } catch (...) {
    fail_from(std::current_exception());
    moved = true;
  }
  return moved;
}

std::exception_ptr Engine::take_watcher_verdict() {
  std::exception_ptr e;
  {
    std::lock_guard lk(abort_mu_);
    e = abort_error_;
  }
  if (!broken_ || has_work()) fail_everything(e);
  abort_flag_.store(false);
  return e;
}

std::exception_ptr Engine::fail_from(std::exception_ptr error) {
  // The transport's state with the failed peer is unknown now: fail everything, and every
  // later operation, with this error.
  auto e = prefer_watcher_verdict(error);
  try {
    std::rethrow_exception(e);
  } catch (const MismatchError& ex) {
    // Ranks called different collectives: the ranks that do not exchange messages with
    // this one would wait for data that never comes, so every rank hears it now through
    // the store (the first report of a job wins).
    log::warn("{}", ex.what());
    if (store_) {
      try {
        store_->report_failure(ex.detail(), ex.peer(), ErrorKind::Mismatch);
      } catch (const Error& report) {
        log::info("could not report the mismatch to the store: {}", report.what());
      }
    }
  } catch (const std::exception& ex) {
    log::warn("{}", ex.what());
  }
  fail_everything(e);
  return e;
}

template <typename Pred>
void Engine::drive_until(Pred done, Deadline deadline) {
  int idle = 0;
  while (!done()) {
    if (step()) {
      idle = 0;
      continue;
    }
    if (deadline.expired()) return;
    idle_pause(++idle);
  }
}

void Engine::idle_pause(int idle) const {
  if (idle > spins_before_yield_) sched_yield();
  if (idle > 20000) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

void Engine::wait(WorkState& w, Deadline deadline, bool throw_at_deadline) {
  // A waiting caller drives the engine itself: the progress thread steps aside as soon as it
  // sees callers_waiting_, so a blocking call pays no thread hand-off.
  callers_waiting_.fetch_add(1);
  int misses = 0;
  bool timed_out = false;
  while (w.status.load(std::memory_order_acquire) == WorkState::Pending) {
    if (deadline.expired()) {
      timed_out = true;
      break;
    }
    if (drive_mu_.try_lock()) {
      std::lock_guard g(drive_mu_, std::adopt_lock);
      drive_until([&] { return w.status.load(std::memory_order_acquire) != WorkState::Pending; }, deadline);
      continue;
    }
    // Another caller is driving (or the thread is finishing its step): yield, and after a
    // while sleep until a completion is announced.
    if (++misses < 1000) {
      sched_yield();
      continue;
    }
    sleepers_.fetch_add(1);
    {
      std::unique_lock lk(done_mu_);
      done_cv_.wait_for(lk, std::chrono::microseconds(200),
                        [&] { return w.status.load(std::memory_order_acquire) != WorkState::Pending; });
    }
    sleepers_.fetch_sub(1);
  }
  callers_waiting_.fetch_sub(1);
  // Whatever else is queued goes back to the progress thread.
  if (has_work()) hand_back_to_progress_thread();
  if (timed_out && throw_at_deadline)
    throw TimeoutError(rank(), -1, "wait",
                       fmt::format("operation #{} not complete after {:.0f} ms", w.seq, ms_since(w.submitted)));
}

bool Engine::test(WorkState& w) {
  if (w.status.load(std::memory_order_acquire) == WorkState::Pending && drive_mu_.try_lock()) {
    std::lock_guard g(drive_mu_, std::adopt_lock);
    step();
  }
  return w.status.load(std::memory_order_acquire) != WorkState::Pending;
}

void Engine::progress_thread_main() {
  auto poll = kHandBackPollMin;
  for (;;) {
    {
      std::unique_lock lk(queue_mu_);
      auto signalled = [&] { return stopping_ || async_pending_; };
      if (has_work()) {
        // A caller is driving it, or has just left it to us (hand_back_to_progress_thread).
        queue_cv_.wait_for(lk, poll, signalled);
        poll = std::min(poll * 2, kHandBackPollMax);
      } else {
        progress_sleeps_untimed_ = true;
        queue_cv_.wait(lk, signalled);
        progress_sleeps_untimed_ = false;
      }
      if (stopping_) return;
      async_pending_ = false;
    }
    // A waiting caller (or another driver) has it.
    if (callers_waiting_.load() > 0 || !has_work() || !drive_mu_.try_lock()) continue;
    poll = kHandBackPollMin;
    {
      std::lock_guard g(drive_mu_, std::adopt_lock);
      drive_until([&] { return !has_work() || callers_waiting_.load() > 0 || stopping_flag_.load(); },
                  Deadline::never());
    }
    if (has_work() && callers_waiting_.load() == 0) wake_progress_thread();
  }
}

}  // namespace ringlink::detail
