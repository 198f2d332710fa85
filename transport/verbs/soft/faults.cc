// Injected faults (soft_verbs.h): counted on the posting thread, each fires once, on the N-th
// posted send work request (drop-peer, port-down) or the N-th RDMA WRITE with data (bad-rkey,
// oob-write), and then takes the path the real failure would take.
#include <sys/socket.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "common/log.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {

Fault parse_fault(const std::string& spec) {
  Fault f;
  std::string kind = spec, count;
  if (auto colon = spec.find(':'); colon != std::string::npos) {
    kind = spec.substr(0, colon);
    count = spec.substr(colon + 1);
  }
  if (kind == "drop-peer")
    f.kind = Fault::Kind::DropPeer;
  else if (kind == "bad-rkey")
    f.kind = Fault::Kind::BadRkey;
  else if (kind == "oob-write")
    f.kind = Fault::Kind::OobWrite;
  else if (kind == "port-down")
    f.kind = Fault::Kind::PortDown;
  else if (kind == "none" || kind.empty())
    return f;
  else
    throw std::invalid_argument("unknown soft verbs fault '" + kind + "'");
  if (!count.empty()) {
    char* end = nullptr;
    unsigned long long n = std::strtoull(count.c_str(), &end, 10);
    if (!end || *end || n == 0) throw std::invalid_argument("bad soft verbs fault count '" + count + "'");
    f.after = n;
  }
  return f;
}

Fault fault_for_rank(const std::string& spec, int rank) {
  std::string fault = spec;
  if (auto at = spec.find('@'); at != std::string::npos) {
    fault = spec.substr(0, at);
    if (spec.substr(at + 1) != std::to_string(rank)) return {};
  }
  return parse_fault(fault);
}

void set_fault(ibv_context* context, Fault fault) {
  Context* c = of(context);
  std::lock_guard lk(c->mu);
  c->fault = fault;
  c->sends_posted = c->writes_posted = 0;
}

void count_for_faults(Context* c, SendWr& wr) {
  ++c->sends_posted;
  const Fault& f = c->fault;
  if ((f.kind == Fault::Kind::DropPeer || f.kind == Fault::Kind::PortDown) && c->sends_posted == f.after)
    c->drop_now = true;  // the service thread breaks the connections before it moves this request
  bool is_write = wr.opcode == IBV_WR_RDMA_WRITE || wr.opcode == IBV_WR_RDMA_WRITE_WITH_IMM;
  if (!is_write || wr.length == 0) return;
  ++c->writes_posted;
  if (c->writes_posted != f.after) return;
  if (f.kind == Fault::Kind::BadRkey) {
    wr.rkey ^= 0x00a50000u;  // still looks like a key, names no region
    log::info("soft verbs: injected fault: RDMA WRITE with a wrong rkey");
  } else if (f.kind == Fault::Kind::OobWrite) {
    wr.remote_addr += uint64_t{1} << 40;
    log::info("soft verbs: injected fault: RDMA WRITE past its region");
  }
}

// The injected drop: every connection of the context breaks at once, as when the peers vanish;
// port-down also takes the port down and says so with IBV_EVENT_PORT_ERR.
void drop_everything(Context* c) {
  c->drop_now = false;
  log::info("soft verbs: injected fault: context LID {} drops all its connections", c->lid);
  for (auto& p : c->pending) close_pending(p);
  c->pending.clear();
  for (auto& [qpn, qp] : c->qps) {
    if (qp->out.fd >= 0) ::shutdown(qp->out.fd, SHUT_RDWR);
    if (qp->in.fd >= 0) ::shutdown(qp->in.fd, SHUT_RDWR);
    qp->in.reset();
    peer_gone(qp);
  }
  if (c->fault.kind == Fault::Kind::PortDown) {
    c->port_down = true;
    ibv_async_event ev{};
    ev.event_type = IBV_EVENT_PORT_ERR;
    ev.element.port_num = 1;
    push_async(c, ev);
  }
}

}  // namespace ringlink::verbs::soft
