// The software HCA: what the entry points hand work to and what the service thread runs. Each
// group below lives in its own file and states, next to each check, the rule of a real HCA it
// imitates.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "transport/verbs/soft/frame_checks.h"
#include "transport/verbs/soft/objects.h"

namespace ringlink::verbs::soft {

inline constexpr size_t kBudgetPerStream = 2 << 20;  // bytes per socket per round, so rounds stay short

// ---- completions.cc: completion queues, asynchronous events, the error state ----------------
void push_async(Context* c, ibv_async_event ev);
// The QP or CQ an event names (nullptr for port and device events).
const void* event_object(const ibv_async_event& ev);
// Before a QP or CQ is destroyed, with c->mu held in `lk`: its queued events are dropped (as the
// kernel drops them), and those already handed out are waited for until acknowledged, as
// ibv_destroy_qp/cq wait. False when they are still not acknowledged after kEventAckPatience.
bool retire_events_of(Context* c, std::unique_lock<std::mutex>& lk, const void* object);
inline constexpr std::chrono::seconds kEventAckPatience{10};
void push_cqe(Cq* cq, const ibv_wc& wc);
void complete_send(Qp* qp, const SendWr& wr, ibv_wc_status status, uint32_t vendor);
void complete_recv(Qp* qp, const RecvWr& wr, ibv_wc_status status, ibv_wc_opcode opcode, uint32_t bytes,
                   const uint32_t* imm, uint32_t vendor = 0);
void set_state(Qp* qp, ibv_qp_state s);
void qp_to_error(Qp* qp);

// ---- memory_access.cc: the protection checks, and reaching host or device memory ------------
bool resolve_local(Context* c, Qp* qp, const std::vector<ibv_sge>& sges, bool need_write, std::vector<Segment>& out);
uint32_t check_remote(Context* c, Qp* qp, uint64_t addr, uint64_t length, uint32_t rkey, int right, Segment& seg);
bool segment_alive(Context* c, const Segment& seg);
bool copy_to(const Segment& dst, size_t off, const std::byte* src, size_t n);
bool stage_device_payload(TxFrame& f);

// ---- sockets.cc: frames onto and off the loopback streams -----------------------------------
enum class Io { Done, Blocked, Closed };
Io flush_tx(Context* c, Stream& s);
Io next_header(Stream& s, Direction direction);
Io pump_payload(Context* c, Stream& s, size_t& budget);
void set_sink(Stream& s, std::vector<Segment> sink, uint64_t length);
TxFrame& queue_frame(Stream& s, WireOp op, uint64_t psn);

// ---- requester.cc: posted sends onto the wire, the responder's answers into completions -----
void connect_requester(Context* c, Qp* qp);
void start_sends(Context* c, Qp* qp);
Io read_responses(Context* c, Qp* qp, size_t& budget);
void fail_requester(Qp* qp, ibv_wc_status status, uint32_t vendor);
void peer_gone(Qp* qp);

// ---- responder.cc: incoming requests checked and applied to memory --------------------------
Io read_requests(Context* c, Qp* qp, size_t& budget);
void flush_ack(Qp* qp);

// ---- service.cc: the thread that plays the HCA's engines ------------------------------------
void service_main(Context* c);
void wake(Context* c);
void close_pending(PendingSocket& p);

// ---- faults.cc: injected faults -------------------------------------------------------------
void count_for_faults(Context* c, SendWr& wr);
void drop_everything(Context* c);

}  // namespace ringlink::verbs::soft
