// How the engine tells late from dead: the silence deadline of an operation, the chain of
// published stalls that names the rank everyone waits on, and the watcher thread that keeps the
// heartbeats with rank 0's store and turns the store's verdicts into this rank's error.
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <thread>

#include <fmt/format.h>

#include "bootstrap/store_keys.h"
#include "bootstrap/store_protocol.h"
#include "comm/engine.h"
#include "common/log.h"
#include "ringlink/error.h"

namespace ringlink::detail {

void Engine::watch_silence(WorkState& w, Progress p, Clock::time_point now) {
  if (p == Progress::Moved)
    w.last_progress = Clock::now();
  else if (now - w.last_progress > options_.timeout)
    raise_silence(*w.op);
}

bool Engine::await_watcher_verdict(milliseconds at_most) {
  Deadline until = Deadline::after(at_most);
  while (!abort_flag_.load(std::memory_order_acquire) && !until.expired())
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return abort_flag_.load(std::memory_order_acquire);
}

std::exception_ptr Engine::prefer_watcher_verdict(std::exception_ptr transport_error) {
  // A connection that breaks is often a consequence: the peer exited because a third rank
  // died, or the store is about to report the death with its cause. The watcher's verdict
  // names the rank that failed first, the same way on every rank; give it a moment.
  if (!watch_) return transport_error;
  try {
    std::rethrow_exception(transport_error);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::PeerLost && e.kind() != ErrorKind::Transport) return transport_error;
  } catch (...) {
    return transport_error;
  }
  await_watcher_verdict(kWatcherVerdictGrace);
  std::lock_guard lk(abort_mu_);
  return abort_error_ ? abort_error_ : transport_error;
}

void Engine::raise_silence(Operation& op) {
  const int peer = op.waiting_on();
  std::string detail = fmt::format("no progress for {} ms", options_.timeout.count());
  if (peer < 0) throw TimeoutError(rank(), -1, op.name(), detail);
  // The silent peer may itself be waiting on someone. Every rank that times out says whom it
  // waits on; following those reports leads to the rank that reported nothing: the one that is
  // dead, wedged or late. Without the store, name the direct peer.
  int culprit = peer;
  std::string path = fmt::format("rank {} waits on rank {}", rank(), peer);
  bool cycle = false;
  // Follows the published stalls from `peer`; true when the chain ends at a rank that
  // published none (the culprit) rather than in a cycle or an unreadable entry.
  auto walk = [&] {
    culprit = peer;
    path = fmt::format("rank {} waits on rank {}", rank(), peer);
    cycle = false;
    std::vector<int> seen{rank(), peer};
    for (int hop = 0; hop < size(); ++hop) {
      std::string key = store_keys::owned(culprit, "stalled");
      if (!store_->check(key)) return true;
      std::string value = store_->get(key, milliseconds(1000));
      int next = -1;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), next);
      if (ec != std::errc() || end != value.data() + value.size() || next < 0 || next >= size()) return false;
      path += fmt::format(", rank {} waits on rank {}", culprit, next);
      if (std::find(seen.begin(), seen.end(), next) != seen.end()) {
        cycle = true;  // everyone involved waits on someone: the ranks issued different operations
        culprit = peer;
        return false;
      }
      seen.push_back(next);
      culprit = next;
    }
    return false;
  };
  if (store_) {
    // What the last finished walk found: a walk cut short by the store keeps that answer.
    int found = culprit;
    std::string found_path = path;
    bool found_cycle = false;
    auto keep = [&] { found = culprit, found_path = path, found_cycle = cycle; };
    try {
      store_->set(store_keys::owned(rank(), "stalled"), std::to_string(peer));
      auto grace = std::clamp(options_.timeout / 5, milliseconds(200), milliseconds(2000));
      std::this_thread::sleep_for(grace);
      bool open = walk();
      keep();
      if (open) {
        // The chain ends at a rank that published nothing yet. Its own deadline may merely
        // come later (ranks stop making progress at different moments): give it one more
        // grace, or take the verdict of the rank that waits on the real culprit, then look again.
        if (!await_watcher_verdict(grace)) {
          walk();
          keep();
        }
      }
    } catch (const Error&) {
      // Once a rank has reported the job's failure the store answers every request with it,
      // and the watcher is bringing that verdict: wait for it (it is thrown below), as the
      // other ranks take it, rather than blame this rank's direct peer.
      culprit = found, path = found_path, cycle = found_cycle;
      await_watcher_verdict(kWatcherVerdictGrace);
    }
  }
  TimeoutError error =
      cycle ? TimeoutError(rank(), peer, op.name(),
                           fmt::format("{}; every rank in the cycle is waiting ({}): were the same collectives issued "
                                       "in the same order on every rank?",
                                       detail, path))
            : TimeoutError(rank(), culprit, op.name(),
                           fmt::format("{}: rank {} is not responding (dead, wedged or not calling {}) [{}]", detail,
                                       culprit, op.name(), path));
  // Another rank's verdict reached this one meanwhile: that is the job's failure.
  {
    std::lock_guard lk(abort_mu_);
    if (abort_error_) std::rethrow_exception(abort_error_);
  }
  // The job is over: every rank hears it now (the first report wins), rather than each at its
  // own deadline, and rank 0's store stops waiting for ranks that will not say goodbye.
  if (store_) {
    try {
      store_->report_failure(error.detail(), error.peer(),
                             ErrorKind::Timeout);
    } catch (const Error&) {
    }
  }
  throw error;
}

void Engine::abort_from_watcher(std::exception_ptr err, const std::string& message, int peer) {
  {
    std::lock_guard lk(abort_mu_);
    if (abort_error_) return;  // the first failure is the cause; what follows are its echoes
    abort_error_ = err;
  }
  if (has_work())
    log::warn("communicator failed (rank {}): {}", peer, message);
  else
    log::info("communicator failed (rank {}): {}", peer, message);
  abort_flag_.store(true, std::memory_order_release);
  // Nobody may be driving (no work queued): mark the communicator broken for later calls.
  if (!has_work() && drive_mu_.try_lock()) {
    std::lock_guard g(drive_mu_, std::adopt_lock);
    step();
  }
}

std::string Engine::store_unreachable_message(Clock::duration silent) const {
  // Ranks on the store's host (as the store saw their addresses) are cut off with it, unless
  // this rank shares that host: then it is rank 0 itself that stopped (frozen or starved).
  const auto& hosts = store_->hosts();
  std::string where;
  if (hosts.size() == static_cast<size_t>(size()) && hosts[0] != hosts[static_cast<size_t>(rank())]) {
    std::vector<int> cut;
    for (int r = 0; r < size(); ++r)
      if (hosts[static_cast<size_t>(r)] == hosts[0]) cut.push_back(r);
    where = fmt::format("; rank(s) {} on its host {} are unreachable from here (the host is down or the network is "
                        "partitioned)",
                        store_protocol::list_ranks(cut), hosts[0]);
  } else {
    where = " (rank 0 is frozen, or its host or the network is down)";
  }
  return fmt::format("rank 0's rendezvous store at {}:{} is unreachable: no heartbeat for {:.1f} s{}",
                     options_.master_addr, options_.master_port, std::chrono::duration<double>(silent).count(), where);
}

void Engine::watcher_thread_main() {
  // Runs beside the caller's compute: it pings the store and listens to it whatever the
  // caller does, so only a dead process, host or link stops the heartbeats, never a late one.
  auto next_ping = Clock::now();
  for (;;) {
    auto now = Clock::now();
    if (now >= next_ping) {
      watch_->ping();
      next_ping = now + watch_->ping_period();
    }
    auto silent = now - watch_->last_heard();
    if (silent > watch_->silence_limit()) {
      std::string msg = store_unreachable_message(silent);
      abort_from_watcher(std::make_exception_ptr(PeerLostError(rank(), 0, "communicator", msg)), msg, 0);
      return;
    }
    auto wake_at = std::min(next_ping, watch_->last_heard() + watch_->silence_limit());
    auto wait_ms = std::chrono::duration_cast<milliseconds>(wake_at - now).count() + 1;
    pollfd fds[2] = {{watch_->fd(), POLLIN, 0}, {watcher_stop_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, static_cast<int>(std::clamp<int64_t>(wait_ms, 1, 1000)));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!fds[0].revents) continue;
    while (auto ev = watch_->receive()) {
      std::exception_ptr err;
      try {
        if (ev->what == WatchChannel::Event::Kind::Failed)
          throw_error(ev->error, rank(), ev->rank == rank() ? -1 : ev->rank, "communicator", ev->message);
        throw PeerLostError(rank(), ev->rank, "communicator", ev->message);
      } catch (...) {
        err = std::current_exception();
      }
      abort_from_watcher(err, ev->message, ev->rank);
      if (ev->what == WatchChannel::Event::Kind::Closed) return;  // rank 0 is gone
    }
  }
}

}  // namespace ringlink::detail
