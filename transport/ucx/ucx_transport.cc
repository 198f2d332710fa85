#include "transport/ucx/ucx_transport.h"

#include <ucp/api/ucp.h>
#include <ucs/debug/log_def.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "common/recycled.h"
#include "ringlink/error.h"
#include "transport/ucx/endpoint_blob.h"

namespace ringlink {
namespace {

// A UCP tag carries the engine's 40-bit tag above the sender's rank, so a receive matches
// exactly one peer (UCP's tag matching has no source field of its own).
constexpr int kRankBits = 24;
constexpr ucp_tag_t kFullMask = ~ucp_tag_t{0};

ucp_tag_t wire_tag(Tag tag, int sender) { return (ucp_tag_t{tag} << kRankBits) | static_cast<ucp_tag_t>(sender); }

bool is_peer_failure(ucs_status_t s) {
  return s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_ENDPOINT_TIMEOUT || s == UCS_ERR_UNREACHABLE ||
         s == UCS_ERR_CANCELED || s == UCS_ERR_IO_ERROR;
}

class UcxTransport;

// After a peer failure, requests to the failed peer can never complete: UCX 1.13 completes
// outstanding requests only on a forced close, which it allows only in peer error mode (and
// that mode drops its shared-memory transports). Tearing the worker down then releases them,
// and UCX reports each consequence of the failure once more: every request still out
// (mpool.c "was not returned to mpool"), every message that arrived for a receive never posted
// (tag_match.c "unexpected tag-receive descriptor"). Before that, UCX prints the failure itself
// whenever it meets it: a socket to the dead peer that fails (tcp_ep.c "recv(...) failed"), a
// flush towards it (flush.c "error during flush"), with no rank in sight. ringlink reports the
// failure as a typed error naming the rank; UCX's lines are counted and kept to the trace log.
std::atomic<int> g_failure_reports{0};
std::atomic<int> g_failed_teardowns{0};  // transports that saw a failure, being torn down now

bool is_failure_report(const char* file, ucs_log_level_t level, const char* format) {
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  if (level == UCS_LOG_LEVEL_ERROR)
    return std::strcmp(base, "flush.c") == 0 || (std::strcmp(base, "tcp_ep.c") == 0 && std::strstr(format, "failed"));
  return level == UCS_LOG_LEVEL_WARN && g_failed_teardowns.load() > 0 &&
         (std::strcmp(base, "mpool.c") == 0 || std::strcmp(base, "tag_match.c") == 0);
}

ucs_log_func_rc_t quiet_failure_reports(const char* file, unsigned line, const char*, ucs_log_level_t level,
                                        const ucs_log_component_config_t*, const char* format, va_list ap) {
  if (!is_failure_report(file, level, format)) return UCS_LOG_FUNC_RC_CONTINUE;
  g_failure_reports.fetch_add(1);
  if (log::enabled(LogLevel::Trace)) {
    char text[512];
    va_list copy;
    va_copy(copy, ap);
    std::vsnprintf(text, sizeof text, format, copy);
    va_end(copy);
    log::trace("UCX {}:{}: {}", file, line, text);
  }
  return UCS_LOG_FUNC_RC_STOP;
}

// ucs_log handlers are process-wide; this one stays for the process's life.
void install_quiet_failure_reports() {
  static std::once_flag once;
  std::call_once(once, [] { ucs_log_push_handler(quiet_failure_reports); });
}

class UcxConnection final : public Connection {
 public:
  UcxConnection(UcxTransport& t, int peer, ucp_ep_h ep) : Connection(peer), transport_(t), ep_(ep) {}
  ~UcxConnection() override;

  std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag) override;
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag) override;

  static void on_error(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* self = static_cast<UcxConnection*>(arg);
    self->failure_ = status;
  }
  ucs_status_t failure() const { return failure_; }
  void set_ep(ucp_ep_h ep) { ep_ = ep; }

 private:
  UcxTransport& transport_;
  ucp_ep_h ep_;
  ucs_status_t failure_ = UCS_OK;
};

class UcxRequest final : public Request, public Recycled<UcxRequest> {
 public:
  UcxRequest(UcxTransport& t, UcxConnection& c, bool is_recv, size_t bytes)
      : transport_(t), conn_(c), is_recv_(is_recv), bytes_(bytes) {}
  ~UcxRequest() override;

  // Takes the result of a *_nbx call.
  void start(ucs_status_ptr_t p) {
    if (p == nullptr) {
      finish(UCS_OK);
    } else if (UCS_PTR_IS_ERR(p)) {
      finish(UCS_PTR_STATUS(p));
    } else {
      req_ = p;
    }
  }
  bool test() override;
  size_t bytes() const override { return bytes_; }
  ucp_tag_recv_info_t* info() { return &info_; }

 private:
  void finish(ucs_status_t s);
  [[noreturn]] void raise(ucs_status_t s) const;

  UcxTransport& transport_;
  UcxConnection& conn_;
  bool is_recv_;
  size_t bytes_;
  void* req_ = nullptr;
  bool done_ = false;
  ucs_status_t status_ = UCS_INPROGRESS;
  ucp_tag_recv_info_t info_{};
};

class UcxTransport final : public Transport {
 public:
  static constexpr const char* kTcpEagerLimit = "256K";

  explicit UcxTransport(const TransportSetup& setup) : rank_(setup.rank) {
    const char* tls_env = std::getenv("UCX_TLS");
    shared_memory_ = setup.local_world_size == setup.world_size && !excludes_shared_memory(tls_env ? tls_env : "");
    install_quiet_failure_reports();
    ucp_config_t* config = nullptr;
    check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read");
    // Over TCP, UCX's automatic eager/rendezvous switch sits at 16-24 KiB and a rendezvous
    // costs a round trip (+15 us per message on loopback). Eager sends up to 256 KiB measured
    // faster there; pipeline chunks (512 KiB) stay rendezvous, which is faster for them. Over
    // shared memory eager copies lose to UCX's single-copy rendezvous, so only a TCP-only
    // UCX_TLS gets this (docs/transports.md). UCX_RNDV_THRESH, when set, wins.
    if (tcp_only(tls_env ? tls_env : "") && !std::getenv("UCX_RNDV_THRESH")) {
      ucs_status_t m = ucp_config_modify(config, "RNDV_THRESH", kTcpEagerLimit);
      if (m != UCS_OK) log::warn("UCX: cannot set RNDV_THRESH={}: {}", kTcpEagerLimit, ucs_status_string(m));
    }
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
    params.features = UCP_FEATURE_TAG;
    params.estimated_num_eps = static_cast<size_t>(setup.world_size);
    ucs_status_t s = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    check(s, "ucp_init");

    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    // The engine lets one thread at a time touch the worker (its progress thread, or a caller
    // driving a blocking wait), which is exactly UCS_THREAD_MODE_SERIALIZED.
    wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    check(ucp_worker_create(context_, &wp, &worker_), "ucp_worker_create");

    ucp_worker_attr_t attr{};
    attr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS;
    check(ucp_worker_query(worker_, &attr), "ucp_worker_query");
    auto* a = reinterpret_cast<const std::byte*>(attr.address);
    address_.assign(a, a + attr.address_length);
    ucp_worker_release_address(worker_, attr.address);

    const char* tls = std::getenv("UCX_TLS");
    name_ = tls ? fmt::format("ucx({})", tls) : "ucx";
    log::info("transport {}: worker address {} bytes", name_, address_.size());
  }

  ~UcxTransport() override {
    finish_closing();
    if (stopped_) {
      // Destroying the worker would progress or purge operations that still use buffers the
      // caller may have freed (and UCX asserts on shared-memory endpoints with work pending):
      // after such a failure the worker and its context are left to the process's exit.
      log::info("UCX: worker left to the process's exit: {} requests were abandoned after a peer failure, some "
                "still using their buffers ({} UCX reports of failures not printed)",
                abandoned_, g_failure_reports.load());
      return;
    }
    if (failed_) g_failed_teardowns.fetch_add(1);
    if (worker_) ucp_worker_destroy(worker_);
    if (context_) ucp_cleanup(context_);
    if (!failed_) return;
    g_failed_teardowns.fetch_sub(1);
    log::info("UCX: released {} requests abandoned after a peer failure ({} UCX reports of failures not printed)",
              abandoned_, g_failure_reports.load());
  }

  // A request destroyed before it completed (its operation failed or was abandoned), and an
  // endpoint that failed: the transport's teardown is then that of a failed job.
  // One that still uses its buffer stops the worker for good: the caller, told of the
  // failure, may free that buffer, and the transport is not used after a failure anyway.
  void note_abandoned(bool still_uses_buffer) {
    ++abandoned_;
    failed_ = true;
    if (still_uses_buffer) stopped_ = true;
  }
  void note_failed_endpoint() { failed_ = true; }
  // An endpoint's close in progress; the transport finishes every close at once, with one
  // deadline, instead of one connection after another.
  void closing(ucs_status_ptr_t request) { closing_.push_back(request); }

  std::string name() const override { return name_; }

  std::vector<std::byte> endpoint_info(int peer) override { return ucx::encode_endpoint(rank_, peer, address_); }

  std::unique_ptr<Connection> connect(int peer, std::span<const std::byte> remote) override {
    auto conn = std::make_unique<UcxConnection>(*this, peer, nullptr);
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    // The peer's bytes reach UCX's address unpacker only inside a well-formed envelope that
    // this rank's peer wrote for it (endpoint_blob.h).
    const ucx::ParsedEndpoint parsed = ucx::parse_endpoint(remote);
    if (!parsed.ok) throw_refused_endpoint(rank_, peer, "UCX", parsed.kind, parsed.why);
    require_endpoint_for(rank_, peer, parsed.rank, parsed.peer);
    ep.address = reinterpret_cast<const ucp_address_t*>(parsed.address.data());
    // No peer error mode: with it, UCX 1.13 leaves out its shared-memory transports (a 4x loss
    // between local ranks, measured with ringlink-ring-pass). A dead peer is reported by the
    // communicator's watch channel instead, and a silent one by its deadline.
    ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    ep.err_handler.cb = &UcxConnection::on_error;
    ep.err_handler.arg = conn.get();
    ucp_ep_h h = nullptr;
    ucs_status_t s = ucp_ep_create(worker_, &ep, &h);
    if (s != UCS_OK)
      throw TransportError(rank_, peer, "connect",
                           fmt::format("ucp_ep_create failed: {}", ucs_status_string(s)));
    conn->set_ep(h);
    return conn;
  }

  std::shared_ptr<MemoryRegion> register_memory(void* ptr, size_t bytes, MemoryKind kind) override {
    if (kind != MemoryKind::Host)
      throw InvalidArgumentError(rank_, -1, "register memory", "the UCX transport takes host memory only");
    // UCX registers (for RDMA-capable lanes) through its own cache on first use; TCP and shared
    // memory need nothing, so the region only records the buffer.
    return std::make_shared<MemoryRegion>(ptr, bytes, kind);
  }

  bool progress() override { return !stopped_ && ucp_worker_progress(worker_) != 0; }

  LinkProperties properties() const override {
    // Measured on a 2-core VM (docs/collectives.md, "Measured constants"): latency = a 2-rank
    // 8-byte allreduce (one exchange through the engine); bandwidth = one direction of
    // ringlink-bench p2p --bidir in 512 KiB messages.
    return shared_memory_ ? LinkProperties{1.0, 20.0, true} : LinkProperties{4.5, 2.9, false};
  }

  ucp_worker_h worker() const { return worker_; }
  int rank() const { return rank_; }

 private:
  void check(ucs_status_t s, const char* what) const {
    if (s != UCS_OK)
      throw TransportError(rank_, -1, "ucx init", fmt::format("{} failed: {}", what, ucs_status_string(s)));
  }

  // True when UCX may use shared memory between every pair of ranks (all on this host).
  static bool excludes_shared_memory(std::string_view tls) {
    if (tls.empty() || tls.front() == '^') return false;
    for (const char* t : {"all", "sm", "shm", "posix", "sysv", "cma", "knem", "xpmem"})
      if (tls.find(t) != std::string_view::npos) return false;
    return true;
  }

  // True when UCX_TLS allows TCP and nothing else that moves data ("tcp", "tcp,self").
  static bool tcp_only(std::string_view tls) {
    if (tls.empty() || tls.front() == '^') return false;
    bool tcp = false;
    while (!tls.empty()) {
      size_t comma = tls.find(',');
      std::string_view t = tls.substr(0, comma);
      if (t == "tcp") tcp = true;
      else if (t != "self") return false;
      tls = comma == std::string_view::npos ? std::string_view{} : tls.substr(comma + 1);
    }
    return tcp;
  }

  // Progresses the endpoint closes until they complete or the deadline: short once requests
  // were abandoned (a flush towards a failed peer never completes), else long enough to flush.
  void finish_closing() {
    Deadline deadline = Deadline::after(milliseconds(failed_ ? 100 : 1000));
    auto pending = [&] {
      return std::any_of(closing_.begin(), closing_.end(),
                         [](ucs_status_ptr_t r) { return ucp_request_check_status(r) == UCS_INPROGRESS; });
    };
    while (!stopped_ && pending() && !deadline.expired()) ucp_worker_progress(worker_);
    for (ucs_status_ptr_t r : closing_) {
      // A flush that failed or never ended: a peer is gone, whatever the job saw of it.
      if (ucp_request_check_status(r) != UCS_OK) failed_ = true;
      ucp_request_free(r);
    }
    closing_.clear();
  }

  int rank_;
  int abandoned_ = 0;
  bool failed_ = false;
  bool stopped_ = false;  // the worker is not progressed any more (note_abandoned)
  std::vector<ucs_status_ptr_t> closing_;
  bool shared_memory_ = false;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<std::byte> address_;
  std::string name_;
};

UcxConnection::~UcxConnection() {
  if (!ep_) return;
  // A failed endpoint cannot be flushed, and UCX refuses to force its close in error mode
  // none: the worker's destruction releases it.
  if (failure_ != UCS_OK) {
    transport_.note_failed_endpoint();
    return;
  }
  // A flushing close; the transport waits for all of them together.
  ucp_request_param_t p{};
  ucs_status_ptr_t r = ucp_ep_close_nbx(ep_, &p);
  if (UCS_PTR_IS_PTR(r)) transport_.closing(r);
}

std::unique_ptr<Request> UcxConnection::isend(const void* buf, size_t bytes, MemoryRegion*, Tag tag) {
  auto req = std::make_unique<UcxRequest>(transport_, *this, false, bytes);
  if (failure_ != UCS_OK) {
    req->start(UCS_STATUS_PTR(failure_));
    return req;
  }
  ucp_request_param_t p{};
  p.op_attr_mask = 0;
  req->start(ucp_tag_send_nbx(ep_, buf, bytes, wire_tag(tag, transport_.rank()), &p));
  return req;
}

std::unique_ptr<Request> UcxConnection::irecv(void* buf, size_t bytes, MemoryRegion*, Tag tag) {
  auto req = std::make_unique<UcxRequest>(transport_, *this, true, bytes);
  ucp_request_param_t p{};
  // UCX 1.13 leaves recv_info unset when a receive completes at once, and the length is
  // needed (algorithms check it against what they posted): always take a request.
  p.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  p.recv_info.tag_info = req->info();
  req->start(ucp_tag_recv_nbx(transport_.worker(), buf, bytes, wire_tag(tag, peer()), kFullMask, &p));
  return req;
}

UcxRequest::~UcxRequest() {
  if (!req_) return;
  // An abandoned receive must not land in a buffer the caller may free: cancel it first. UCX
  // cancels only receives it has not matched yet; a matched one, like a send, goes on using
  // its buffer whenever the worker progresses.
  if (!done_ && ucp_request_check_status(req_) == UCS_INPROGRESS) {
    if (is_recv_) ucp_request_cancel(transport_.worker(), req_);
    transport_.note_abandoned(ucp_request_check_status(req_) == UCS_INPROGRESS);
  }
  ucp_request_free(req_);
}

void UcxRequest::finish(ucs_status_t s) {
  done_ = true;
  status_ = s;
  if (is_recv_ && s == UCS_OK) bytes_ = info_.length;
}

bool UcxRequest::test() {
  if (!done_) {
    ucs_status_t s = is_recv_ ? ucp_tag_recv_request_test(req_, &info_) : ucp_request_check_status(req_);
    if (s == UCS_INPROGRESS) {
      // Receives are posted on the worker, not the endpoint, so a dead peer's endpoint
      // error is checked here too.
      if (conn_.failure() != UCS_OK) raise(conn_.failure());
      return false;
    }
    finish(s);
  }
  if (status_ != UCS_OK) raise(status_);
  return true;
}

void UcxRequest::raise(ucs_status_t s) const {
  const char* what = is_recv_ ? "receive" : "send";
  int rank = transport_.rank();
  int peer = conn_.peer();
  if (s == UCS_ERR_MESSAGE_TRUNCATED)
    throw MismatchError(rank, peer, what,
                        fmt::format("message from rank {} is larger than the {} bytes posted", peer, bytes_));
  if (is_peer_failure(s))
    throw PeerLostError(rank, peer, what, fmt::format("connection to rank {} failed: {}", peer, ucs_status_string(s)));
  throw TransportError(rank, peer, what, fmt::format("UCX error: {}", ucs_status_string(s)));
}

}  // namespace

std::unique_ptr<Transport> create_ucx_transport(const TransportSetup& setup) {
  return std::make_unique<UcxTransport>(setup);
}

}  // namespace ringlink
