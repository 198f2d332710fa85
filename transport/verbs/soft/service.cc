// The service thread: it plays the HCA's engines, so work moves without the application's
// help, as DMA does. Each round it accepts connections (binding each to the QP its hello names),
// runs every QP's responder side, then every requester side, and sleeps in poll() when nothing
// is left to do; posting wakes it.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {
namespace {

constexpr auto kHelloPatience = std::chrono::seconds(30);

void accept_all(Context* c, int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->pending.size() >= kMaxPendingSockets) {  // a flood of silent sockets holds no more
      ::close(fd);
      continue;
    }
    PendingSocket p;
    p.fd = fd;
    p.since = Clock::now();
    c->pending.push_back(p);
  }
}

// Binds accepted sockets to their QPs once the hello has arrived and the QP can receive.
void serve_pending(Context* c) {
  for (auto& p : c->pending) {
    while (p.got < sizeof(WireHeader)) {
      ssize_t n = ::recv(p.fd, p.hello + p.got, sizeof(WireHeader) - p.got, MSG_DONTWAIT);
      if (n > 0) {
        p.got += static_cast<size_t>(n);
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) close_pending(p);
      break;
    }
    if (p.fd < 0) continue;
    if (p.got < sizeof(WireHeader)) {
      // A partial hello has a deadline: a peer that stops mid-hello holds no socket for ever.
      if (Clock::now() - p.since > std::chrono::milliseconds(kHelloDeadlineMs)) close_pending(p);
      continue;
    }
    Hello h;
    if (std::string why = parse_hello({p.hello, sizeof p.hello}, h); !why.empty()) {
      log::warn("soft verbs: dropping a connection whose hello is malformed: {}", why);
      close_pending(p);
      continue;
    }
    auto it = c->qps.find(h.dest_qpn);
    if (it == c->qps.end()) {
      close_pending(p);  // no such QP: the requester's retries run out
      continue;
    }
    Qp* qp = it->second;
    // A QP receives from RTR on; packets to one not yet ready are dropped (the requester retries).
    if (qp->state != IBV_QPS_RTR && qp->state != IBV_QPS_RTS) {
      if (Clock::now() - p.since > kHelloPatience) close_pending(p);
      continue;
    }
    if (h.qpn != qp->dest_qpn || h.lid != qp->dlid) {
      close_pending(p);  // an RC QP talks to the one peer it was connected to
      continue;
    }
    qp->in.reset();
    qp->in.fd = p.fd;
    qp->in_discard = false;
    p.fd = -1;
  }
  std::erase_if(c->pending, [](const PendingSocket& p) { return p.fd < 0; });
}

// Responder side first for every QP, then the requester side: bytes a peer sent before it went
// away are delivered before its disappearance fails anything.
void serve_responder(Context* c, Qp* qp) {
  if (qp->in.fd < 0) return;
  if (qp->in.readable || qp->in.parked || qp->in.end > qp->in.begin) {
    size_t budget = kBudgetPerStream;
    if (read_requests(c, qp, budget) == Io::Closed) {
      qp->in.reset();  // the requester went away; a responder has nothing to report
      return;
    }
  }
  flush_ack(qp);
  if (flush_tx(c, qp->in) == Io::Closed) qp->in.reset();
}

void serve_requester(Context* c, Qp* qp) {
  if (qp->state == IBV_QPS_RTS) start_sends(c, qp);
  if (qp->out.fd >= 0) {
    if (flush_tx(c, qp->out) == Io::Closed) {
      peer_gone(qp);
    } else if (qp->out.readable || qp->out.end > qp->out.begin) {
      size_t budget = kBudgetPerStream;
      if (read_responses(c, qp, budget) == Io::Closed) peer_gone(qp);
    }
  }
  if (qp->state == IBV_QPS_RTS && !qp->sq.empty() && !qp->sq_blocked) c->more_work = true;
}

}  // namespace

void service_main(Context* c) {
  struct Watch {
    uint32_t qpn;
    bool in;
  };
  std::vector<pollfd> fds;
  std::vector<Watch> watches;
  for (;;) {
    // Checked before every poll too: the read of wake_fd below may consume close_device's wake-up.
    if (c->stop.load()) return;
    int timeout_ms = -1;
    fds.clear();
    watches.clear();
    {
      std::lock_guard lk(c->mu);
      fds.push_back({c->wake_fd, POLLIN, 0});
      fds.push_back({c->listen_fd, POLLIN, 0});
      watches.push_back({0, false});
      watches.push_back({0, false});
      for (auto& p : c->pending) {
        fds.push_back({p.fd, POLLIN, 0});
        watches.push_back({0, false});
        // Waiting for its QP to become ready (10 ms), or for the rest of its hello until the
        // deadline (checked each 100 ms).
        const int wait = p.got == sizeof(WireHeader) ? 10 : 100;
        timeout_ms = timeout_ms < 0 ? wait : std::min(timeout_ms, wait);
      }
      for (auto& [qpn, qp] : c->qps) {
        if (qp->out.fd >= 0) {
          fds.push_back({qp->out.fd, static_cast<short>(POLLIN | (qp->out.tx.empty() ? 0 : POLLOUT)), 0});
          watches.push_back({qpn, false});
        }
        if (qp->in.fd >= 0 && !qp->in.parked) {
          fds.push_back({qp->in.fd, static_cast<short>(POLLIN | (qp->in.tx.empty() ? 0 : POLLOUT)), 0});
          watches.push_back({qpn, true});
        }
        if (qp->in.parked) timeout_ms = timeout_ms < 0 ? 1 : std::min(timeout_ms, 1);
      }
      if (c->host_listen_fd >= 0) {
        fds.push_back({c->host_listen_fd, POLLIN, 0});
        watches.push_back({0, false});
      }
      if (c->more_work || c->drop_now) timeout_ms = 0;
      c->more_work = false;
    }
    ::poll(fds.data(), fds.size(), timeout_ms);
    if (c->stop.load()) return;
    std::lock_guard lk(c->mu);
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t n = ::read(c->wake_fd, &v, sizeof v);
    }
    c->wake_pending.store(false);
    for (size_t i = 2; i < fds.size(); ++i) {
      if (watches[i].qpn == 0 || !fds[i].revents) continue;
      auto it = c->qps.find(watches[i].qpn);
      if (it == c->qps.end()) continue;
      Stream& s = watches[i].in ? it->second->in : it->second->out;
      if (s.fd == fds[i].fd) s.readable = (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    }
    if (fds[1].revents & POLLIN) accept_all(c, c->listen_fd);
    if (c->host_listen_fd >= 0 && fds.back().fd == c->host_listen_fd && (fds.back().revents & POLLIN))
      accept_all(c, c->host_listen_fd);
    if (!c->pending.empty()) serve_pending(c);
    if (c->drop_now) drop_everything(c);
    for (auto& [qpn, qp] : c->qps) serve_responder(c, qp);
    for (auto& [qpn, qp] : c->qps) {
      serve_requester(c, qp);
      qp->out.readable = qp->in.readable = false;
    }
  }
}

void wake(Context* c) {
  if (c->wake_pending.exchange(true)) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(c->wake_fd, &one, sizeof one);
}

void close_pending(PendingSocket& p) {
  if (p.fd >= 0) ::close(p.fd);
  p.fd = -1;
}

}  // namespace ringlink::verbs::soft
