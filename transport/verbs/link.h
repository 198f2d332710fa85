// Everything about one peer: its queue pairs (data QPs for the clear-to-send protocol, a control
// QP for eager messages and credits), the control memory the peer writes into (its CTS FIFO, the
// size table, eager buffers), the matching of sends to clear-to-sends, and the completion of
// receives. wire.h states the protocol.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/host_buffer.h"
#include "transport.h"
#include "transport/verbs/device.h"
#include "transport/verbs/op.h"
#include "transport/verbs/queue_pair.h"
#include "transport/verbs/wire.h"
#include "transport/verbs/work_request.h"

namespace ringlink::verbs {

class VerbsTransport;

class Link : public std::enable_shared_from_this<Link> {
 public:
  Link(VerbsTransport& t, int peer, uint32_t id);
  ~Link() { close(); }

  // connect.cc: the bytes the peer needs, and connecting with the peer's.
  std::vector<std::byte> local_info() const;
  void connect(std::span<const std::byte> remote);
  void close();
  void drain();

  std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag);
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag);
  bool test(Op& op);
  void cancel(const std::shared_ptr<Op>& op);

  void on_completion(const ibv_wc& wc, const WrId& id);
  bool poll_fifo();
  bool hungry() const { return unmatched_sends_ > 0 && !closed_; }
  void fail(Failure f);
  void finish(const std::shared_ptr<Op>& op);
  int peer() const { return peer_; }
  uint32_t id() const { return id_; }
  const std::vector<uint32_t>& qp_numbers() const { return qpns_; }
  bool in_hungry_list = false;

 private:
  // One work request of a message, before it is posted.
  struct Piece {
    uint32_t qp;
    WrKind kind;
    ibv_wr_opcode opcode;
    uint64_t local;
    uint32_t length;
    uint32_t lkey;
    uint64_t remote;
    uint32_t rkey;
    uint32_t imm;
    bool inlined;
    bool signal;  // ends a stripe: its completion counts toward the send's
  };

  // data_path.cc
  void resolve(Tag tag);
  bool post_cts(const std::shared_ptr<Op>& op);
  void match(const std::shared_ptr<Op>& op, const wire::CtsEntry& cts);
  bool post_data(const std::shared_ptr<Op>& op);
  bool post_void(uint32_t slot);
  bool post_pieces(std::vector<Piece>& pieces, uint32_t serial);
  void post_receives(uint32_t qp, uint32_t n);
  void drain_backlogs();
  void on_imm(uint32_t imm);
  void on_error(const ibv_wc& wc, const WrId& id);
  std::string describe(const WrId& id) const;
  // eager.cc
  uint32_t eager_credits();
  bool post_eager(const std::shared_ptr<Op>& op);
  void return_credits(bool force);
  void post_eager_receive(uint32_t index);
  void on_eager(uint32_t index, uint32_t bytes);
  void deliver_eager(const std::shared_ptr<Op>& op, const std::byte* data, uint64_t size);
  // link.cc
  ibv_qp* make_qp(uint32_t max_recv);
  void settle(const Op& op);
  std::shared_ptr<Registration> registration(std::byte* buf, size_t bytes, MemoryRegion* mr, MemoryKind& kind,
                                             const char* what, bool defer_host = false);
  [[noreturn]] void throw_failure(const Failure& f, const Op& op) const;

  VerbsTransport& t_;
  std::shared_ptr<Device> dev_;
  const VerbsApi& api_;
  int rank_;
  int peer_;
  uint32_t id_;
  bool connected_ = false;
  bool closed_ = false;
  bool draining_ = false;
  std::vector<SendQueue> qps_;  // the data QPs
  SendQueue control_;           // the control QP: eager messages and credit returns
  std::vector<uint32_t> qpns_;  // data QPs, then the control QP
  uint32_t max_inline_ = 0;     // the least inline room any of the QPs was granted
  uint32_t depth_ = wire::kFifoDepth;

  // Control memory: the peer writes fifo_in_ and sizes_in_; we write from cts_out_ and sizes_out_.
  HostBuffer ctrl_;
  ibv_mr* ctrl_mr_ = nullptr;
  wire::CtsEntry* fifo_in_ = nullptr;
  wire::CtsEntry* cts_out_ = nullptr;
  uint64_t* sizes_in_ = nullptr;
  uint64_t* sizes_out_ = nullptr;
  std::byte* eager_in_ = nullptr;   // kEagerSlots posted receive buffers on the control QP
  std::byte* eager_out_ = nullptr;  // sources of our eager SENDs
  uint64_t* credits_in_ = nullptr;  // the peer's count of our eager messages it has freed
  uint64_t* credits_out_ = nullptr;
  uint64_t remote_fifo_ = 0, remote_sizes_ = 0, remote_credits_ = 0;
  uint32_t remote_fifo_rkey_ = 0, remote_sizes_rkey_ = 0;

  // Eager messages and per-tag numbering.
  std::unordered_map<Tag, uint64_t> send_msn_, recv_msn_;
  uint64_t eager_sent_ = 0, remote_released_ = 0;      // as sender
  uint64_t eager_released_ = 0, credits_returned_ = 0;  // as receiver
  bool credit_starved_ = false;  // a small send waits for credits
  std::unordered_map<Tag, std::map<uint64_t, std::shared_ptr<Op>>> posted_recvs_;     // by msn, not yet matched
  std::unordered_map<Tag, std::map<uint64_t, std::vector<std::byte>>> unexpected_;  // eager, not yet received
  std::deque<uint32_t> void_backlog_;

  // Receiver side.
  wire::CtsSlots slots_;
  std::vector<std::shared_ptr<Op>> slot_ops_;
  std::deque<std::shared_ptr<Op>> cts_backlog_;  // waiting for a FIFO slot or send-queue room
  uint32_t next_recv_serial_ = 0;

  // Sender side.
  wire::CtsReader reader_;
  std::unordered_map<Tag, std::deque<std::shared_ptr<Op>>> sends_by_tag_;  // waiting for a CTS
  std::unordered_map<Tag, std::deque<wire::CtsEntry>> cts_by_tag_;        // waiting for a send
  size_t unmatched_sends_ = 0;
  std::vector<bool> cts_held_;  // by FIFO slot: an entry taken whose message has not been sent
  std::deque<std::shared_ptr<Op>> ready_;                     // matched, waiting for send-queue room
  std::unordered_map<uint32_t, std::shared_ptr<Op>> posted_;  // on the wire, by serial
  uint32_t next_send_serial_ = 0;
  uint32_t next_qp_ = 0;

  // Completion order per tag.
  std::unordered_map<Tag, std::deque<std::shared_ptr<Op>>> send_order_, recv_order_;

  std::optional<Failure> failure_;
};

// A posted op as the engine holds it; dropping it unfinished cancels the op.
class VerbsRequest final : public Request {
 public:
  VerbsRequest(std::shared_ptr<Link> link, std::shared_ptr<Op> op) : link_(std::move(link)), op_(std::move(op)) {}
  ~VerbsRequest() override {
    if (!op_->done) link_->cancel(op_);
  }
  bool test() override { return link_->test(*op_); }
  size_t bytes() const override { return op_->is_send ? op_->bytes : op_->result_bytes; }

 private:
  std::shared_ptr<Link> link_;
  std::shared_ptr<Op> op_;
};

class VerbsConnection final : public Connection {
 public:
  VerbsConnection(int peer, std::shared_ptr<Link> link) : Connection(peer), link_(std::move(link)) {}
  ~VerbsConnection() override {
    link_->drain();
    link_->close();
  }
  std::unique_ptr<Request> isend(const void* buf, size_t bytes, MemoryRegion* mr, Tag tag) override {
    return link_->isend(buf, bytes, mr, tag);
  }
  std::unique_ptr<Request> irecv(void* buf, size_t bytes, MemoryRegion* mr, Tag tag) override {
    return link_->irecv(buf, bytes, mr, tag);
  }

 private:
  std::shared_ptr<Link> link_;
};

}  // namespace ringlink::verbs
