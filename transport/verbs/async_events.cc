// Reading asynchronous events, and what the transport makes of them: a QP's error fails its
// link; a port going down, a CQ error or a device error fails every link.
#include "transport/verbs/async_events.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <fmt/format.h>

#include "common/log.h"
#include "transport/verbs/async_event_kinds.h"
#include "transport/verbs/verbs_transport_impl.h"

namespace ringlink::verbs {

AsyncEventReader::AsyncEventReader(const VerbsApi& api, ibv_context* context) : api_(api), context_(context) {
  // Read only when poll() says so, but never allowed to block the thread's exit.
  ::fcntl(context_->async_fd, F_SETFL, ::fcntl(context_->async_fd, F_GETFL) | O_NONBLOCK);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

AsyncEventReader::~AsyncEventReader() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

std::vector<AsyncEvent> AsyncEventReader::take() {
  std::vector<AsyncEvent> events;
  std::lock_guard lk(mu_);
  events.swap(events_);
  pending_.store(false, std::memory_order_release);
  return events;
}

void AsyncEventReader::run() {
  for (;;) {
    pollfd fds[2] = {{context_->async_fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    ibv_async_event ev{};
    if (api_.get_async_event(context_, &ev) != 0) continue;
    AsyncEvent e{ev.event_type};
    if (event_names_qp(ev.event_type))
      e.qp_num = ev.element.qp ? ev.element.qp->qp_num : 0;
    else if (event_names_port(ev.event_type))
      e.port = ev.element.port_num;
    // Acknowledged at once: the element (a QP) may be destroyed only after its events are.
    api_.ack_async_event(&ev);
    {
      std::lock_guard lk(mu_);
      events_.push_back(e);
    }
    pending_.store(true, std::memory_order_release);
  }
}

bool VerbsTransport::handle_async_events() {
  const std::vector<AsyncEvent> events = async_->take();
  for (const auto& e : events) {
    const char* what = api_.event_type_str(e.type);
    switch (e.type) {
      case IBV_EVENT_QP_FATAL:
      case IBV_EVENT_QP_REQ_ERR:
      case IBV_EVENT_QP_ACCESS_ERR:
      case IBV_EVENT_PATH_MIG_ERR: {
        auto it = qp_links_.find(e.qp_num);
        std::string detail = fmt::format("asynchronous event on QP {:#x}: {} (event {})", e.qp_num, what,
                                         static_cast<int>(e.type));
        if (e.type == IBV_EVENT_QP_ACCESS_ERR && it != qp_links_.end())
          detail += fmt::format("; rank {} wrote outside what this rank advertised, or with a wrong key",
                                it->second->peer());
        log::warn("transport {}: {}", name_, detail);
        if (it != qp_links_.end()) it->second->fail({ErrorKind::Transport, detail});
        break;
      }
      case IBV_EVENT_PORT_ERR:
      case IBV_EVENT_DEVICE_FATAL:
      case IBV_EVENT_CQ_ERR: {
        std::string detail = e.type == IBV_EVENT_PORT_ERR
                                 ? fmt::format("port {}:{} went down ({})", device_name_, e.port, what)
                                 : fmt::format("{} on {} ({})", what, device_name_, static_cast<int>(e.type));
        log::warn("transport {}: {}", name_, detail);
        if (e.type != IBV_EVENT_PORT_ERR || e.port == qp_settings_.port_num) fail_all({ErrorKind::Transport, detail});
        break;
      }
      default:
        log::info("transport {}: asynchronous event: {} (QP {:#x}, port {})", name_, what, e.qp_num, e.port);
        break;
    }
  }
  return !events.empty();
}

}  // namespace ringlink::verbs
