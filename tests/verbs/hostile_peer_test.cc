// A hostile peer on the verbs wire, and on the software verbs' own sockets: rank 0 is a real
// verbs transport over the software verbs; "rank 1" is raw soft-verbs QPs driven by the test,
// which publishes a well-formed endpoint and then writes what no ringlink sender writes: CTS
// entries naming a slot out of range, an oversize or wrapping buffer, minted credits;
// immediates naming a slot past the FIFO, reserved bits, a size larger than the posted receive
// (in the immediate or the size table). Rank 0 must fail the operation with a TransportError
// naming rank 1, and write nothing outside its buffer. A soft-verbs context drops a socket
// that sends half a hello at the hello deadline, and one whose hello is malformed at once.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "ringlink/error.h"
#include "transport.h"
#include "transport/verbs/endpoint.h"
#include "transport/verbs/soft/frame_checks.h"
#include "transport/verbs/soft/soft_verbs.h"
#include "transport/verbs/soft/wire_format.h"
#include "transport/verbs/verbs_api.h"
#include "transport/verbs/verbs_transport.h"
#include "transport/verbs/wire.h"
#include "transport_pair.h"

using namespace std::chrono_literals;
using namespace ringlink;
namespace wire = ringlink::verbs::wire;

namespace {

const verbs::VerbsApi& api() { return verbs::soft_verbs(); }
constexpr Tag kTag = 9;

TransportSetup setup() {
  static const Options options = ringlink::testing::soft_verbs_options(1);
  return TransportSetup{0, 2, 0, 2, options};
}

// Rank 1 as raw QPs: a data QP and a control QP connected to rank 0's, and the control memory
// (CTS FIFO, size table, credit word) rank 0 writes into.
class HostilePeer {
 public:
  HostilePeer() : rank0_(create_verbs_transport(setup())) {
    const verbs::ParsedEndpoint theirs = verbs::parse_endpoint(rank0_->endpoint_info(1));
    if (!theirs.ok) throw std::runtime_error("rank 0's endpoint does not parse: " + theirs.why);
    peer_ = theirs.endpoint;
    int n = 0;
    ibv_device** list = api().get_device_list(&n);
    ctx_ = api().open_device(list[0]);
    api().free_device_list(list);
    pd_ = api().alloc_pd(ctx_);
    cq_ = api().create_cq(ctx_, 256, nullptr, nullptr, 0);
    for (auto*& q : qps_) q = make_qp();
    control_.assign(peer_.fifo_depth * sizeof(wire::CtsEntry) + peer_.fifo_depth * 8 + 8, std::byte{0});
    control_mr_ = reg(control_.data(), control_.size());
    staging_mr_ = reg(staging_, sizeof staging_);

    verbs::Endpoint mine;
    mine.rank = 1;
    mine.peer = 0;
    mine.fifo_depth = peer_.fifo_depth;
    mine.eager_slots = peer_.eager_slots;
    mine.lid = verbs::soft::context_lid(ctx_);
    mine.mtu = peer_.mtu;
    mine.gid_index = peer_.gid_index;
    mine.fifo_addr = reinterpret_cast<uint64_t>(control_.data());
    mine.fifo_rkey = control_mr_->rkey;
    mine.sizes_addr = mine.fifo_addr + peer_.fifo_depth * sizeof(wire::CtsEntry);
    mine.sizes_rkey = control_mr_->rkey;
    mine.credits_addr = mine.sizes_addr + peer_.fifo_depth * 8;
    mine.qpns = {qps_[0]->qp_num, qps_[1]->qp_num};
    conn_ = rank0_->connect(1, verbs::encode_endpoint(mine));
    for (int i = 0; i < 2; ++i) bring_up(qps_[i], peer_.qpns[i]);
  }
  ~HostilePeer() {
    conn_.reset();
    rank0_.reset();
    for (auto* q : qps_) api().destroy_qp(q);
    api().dereg_mr(staging_mr_);
    api().dereg_mr(control_mr_);
    api().destroy_cq(cq_);
    api().dealloc_pd(pd_);
    api().close_device(ctx_);
  }

  Connection& rank0() { return *conn_; }
  void progress() { rank0_->progress(); }

  // Writes CTS entry number 1 into rank 0's FIFO (slot 0), as a receiver would.
  void write_cts(const wire::CtsEntry& e) {
    std::memcpy(staging_, &e, sizeof e);
    post_write(qps_[1], sizeof e, peer_.fifo_addr, peer_.fifo_rkey, false, 0);
  }
  // Writes a word into rank 0's size table at `slot`.
  void write_size(uint32_t slot, uint64_t size) {
    std::memcpy(staging_, &size, sizeof size);
    post_write(qps_[0], sizeof size, peer_.sizes_addr + slot * 8, peer_.sizes_rkey, false, 0);
  }
  // The CTS entry rank 0 wrote for its receive, once it has arrived.
  wire::CtsEntry wait_for_cts() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    const auto* e = reinterpret_cast<const wire::CtsEntry*>(control_.data());
    while (__atomic_load_n(&e->seq_tail, __ATOMIC_ACQUIRE) != 1) {
      progress();
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("rank 0 wrote no clear-to-send");
    }
    return *e;
  }
  // A WRITE WITH IMM of `bytes` bytes into the buffer a CTS entry advertised.
  void write_with_imm(const wire::CtsEntry& into, uint32_t bytes, uint32_t imm) {
    std::memset(staging_, 0x5a, bytes);
    post_write(qps_[0], bytes, into.addr, into.rkey, true, imm);
  }

 private:
  ibv_mr* reg(void* p, size_t n) {
    return api().reg_mr(pd_, p, n, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
  }
  ibv_qp* make_qp() {
    ibv_qp_init_attr a{};
    a.send_cq = cq_;
    a.recv_cq = cq_;
    a.qp_type = IBV_QPT_RC;
    a.cap.max_send_wr = 16;
    a.cap.max_recv_wr = 16;
    a.cap.max_send_sge = 1;
    a.cap.max_recv_sge = 1;
    return api().create_qp(pd_, &a);
  }
  void bring_up(ibv_qp* qp, uint32_t dest_qpn) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.port_num = 1;
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    ASSERT_EQ(api().modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS), 0);
    a = {};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = IBV_MTU_4096;
    a.dest_qp_num = dest_qpn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 1;
    a.ah_attr.dlid = peer_.lid;
    a.ah_attr.port_num = 1;
    ASSERT_EQ(api().modify_qp(qp, &a,
                              IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER),
              0);
    a = {};
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.max_rd_atomic = 1;
    ASSERT_EQ(api().modify_qp(qp, &a,
                              IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                  IBV_QP_MAX_QP_RD_ATOMIC),
              0);
  }
  // Posts one signalled RDMA WRITE (WITH IMM when `with_imm`) from the staging buffer and waits
  // for its completion, driving rank 0 meanwhile.
  void post_write(ibv_qp* qp, uint32_t bytes, uint64_t remote, uint32_t rkey, bool with_imm, uint32_t imm) {
    ibv_sge sge{reinterpret_cast<uint64_t>(staging_), bytes, staging_mr_->lkey};
    ibv_send_wr wr{};
    wr.sg_list = &sge;
    wr.num_sge = bytes ? 1 : 0;
    wr.opcode = with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(imm);
    wr.wr.rdma.remote_addr = remote;
    wr.wr.rdma.rkey = rkey;
    ibv_send_wr* bad = nullptr;
    if (api().post_send(qp, &wr, &bad) != 0) throw std::runtime_error("post_send failed");
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    ibv_wc wc{};
    while (api().poll_cq(cq_, 1, &wc) == 0) {
      progress();
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("the hostile write never completed");
    }
    if (wc.status != IBV_WC_SUCCESS) throw std::runtime_error("hostile write failed with status " + std::to_string(wc.status));
  }

  std::unique_ptr<Transport> rank0_;
  std::unique_ptr<Connection> conn_;
  verbs::Endpoint peer_;
  ibv_context* ctx_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_qp* qps_[2] = {};
  std::vector<std::byte> control_;
  ibv_mr* control_mr_ = nullptr;
  std::byte staging_[4096] = {};
  ibv_mr* staging_mr_ = nullptr;
};

// Drives rank 0 until `req` fails; returns the error's text after checking whom it names.
std::string expect_transport_error(HostilePeer& h, Request& req) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  try {
    for (;;) {
      h.progress();
      if (req.test()) {
        ADD_FAILURE() << "rank 0 completed the operation against a hostile peer";
        return {};
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "rank 0 neither completed nor failed within 10 s";
        return {};
      }
    }
  } catch (const TransportError& e) {
    EXPECT_EQ(e.rank(), 0);
    EXPECT_EQ(e.peer(), 1);
    return e.what();
  }
}

wire::CtsEntry good_cts(uint64_t addr, uint64_t size) {
  wire::CtsEntry e{};
  e.seq_head = e.seq_tail = 1;
  e.addr = addr;
  e.size = size;
  e.tag = kTag;
  e.rkey = 1;
  e.slot = 0;
  return e;
}

struct BadCts {
  const char* name;
  void (*spoil)(wire::CtsEntry&);
  const char* says;
};

class HostileCts : public ::testing::TestWithParam<BadCts> {};

TEST_P(HostileCts, FailsTheSendNamingThePeer) {
  HostilePeer h;
  std::vector<uint8_t> data(64 << 10, 7);  // rendezvous: the send waits for a CTS
  auto send = h.rank0().isend(data.data(), data.size(), nullptr, kTag);
  wire::CtsEntry e = good_cts(0x10000, data.size());
  GetParam().spoil(e);
  h.write_cts(e);
  const std::string what = expect_transport_error(h, *send);
  EXPECT_NE(what.find("rank 1 wrote a malformed clear-to-send"), std::string::npos) << what;
  EXPECT_NE(what.find(GetParam().says), std::string::npos) << what;
}

INSTANTIATE_TEST_SUITE_P(
    Verbs, HostileCts,
    ::testing::Values(BadCts{"SlotOutOfRange", [](wire::CtsEntry& e) { e.slot = 300; }, "names FIFO slot 300"},
                      BadCts{"SlotOfAnotherEntry", [](wire::CtsEntry& e) { e.slot = 5; }, "names FIFO slot 5"},
                      BadCts{"OversizeBuffer", [](wire::CtsEntry& e) { e.size = uint64_t{1} << 60; },
                             "more than any receive can be"},
                      BadCts{"WrappingBuffer", [](wire::CtsEntry& e) { e.addr = ~uint64_t{0} - 100; },
                             "wraps around the address space"},
                      BadCts{"WideTag", [](wire::CtsEntry& e) { e.tag = uint64_t{1} << 45; }, "wider than 40 bits"},
                      BadCts{"MintedCredits", [](wire::CtsEntry& e) { e.eager_released = 1000; },
                             "freed 1000 eager buffers"}),
    [](const auto& test) { return std::string(test.param.name); });

struct BadImm {
  const char* name;
  uint32_t bytes;                         // written before the immediate
  uint32_t (*imm)(uint32_t slot);         // from the slot rank 0's CTS entry named
  uint64_t table_word;                    // written into the size table first, when nonzero
  const char* says;
};

class HostileImmediate : public ::testing::TestWithParam<BadImm> {};

TEST_P(HostileImmediate, FailsTheReceiveNamingThePeerAndWritesNothingOutside) {
  HostilePeer h;
  constexpr size_t kPosted = 4096, kGuard = 4096;
  std::vector<uint8_t> buf(kPosted + kGuard, 0xee);
  auto recv = h.rank0().irecv(buf.data(), kPosted, nullptr, kTag);
  const wire::CtsEntry cts = h.wait_for_cts();
  ASSERT_EQ(cts.size, kPosted);
  if (GetParam().table_word) h.write_size(cts.slot, GetParam().table_word);
  h.write_with_imm(cts, GetParam().bytes, GetParam().imm(cts.slot));
  const std::string what = expect_transport_error(h, *recv);
  EXPECT_NE(what.find("rank 1"), std::string::npos) << what;
  EXPECT_NE(what.find(GetParam().says), std::string::npos) << what;
  for (size_t i = kPosted; i < buf.size(); ++i) ASSERT_EQ(buf[i], 0xee) << "byte " << i << " past the receive changed";
}

INSTANTIATE_TEST_SUITE_P(
    Verbs, HostileImmediate,
    ::testing::Values(
        BadImm{"SlotPastTheFifo", 16, [](uint32_t) { return wire::encode_small(4000, 16); }, 0, "names FIFO slot 4000"},
        BadImm{"ReservedBits", 16, [](uint32_t s) { return wire::encode_large(s, 1, false, false) | (1u << 25); }, 0,
               "reserved bits"},
        BadImm{"SmallSizeLargerThanPosted", 16, [](uint32_t s) { return wire::encode_small(s, 8192); }, 0,
               "8192 bytes written into a 4096-byte receive"},
        BadImm{"TableSizeLargerThanPosted", 16, [](uint32_t s) { return wire::encode_large(s, 1, true, false); },
               uint64_t{1} << 40, "1099511627776 bytes written into a 4096-byte receive"},
        BadImm{"TruncatedButFits", 0, [](uint32_t s) { return wire::encode_large(s, 1, true, true); }, 100,
               "truncated message of 100 bytes for a 4096-byte receive"},
        BadImm{"MoreStripesThanQueuePairs", 16, [](uint32_t s) { return wire::encode_large(s, 4, false, false); }, 0,
               "4 stripes over 1 queue pair"},
        BadImm{"VoidThatSaysMore", 0,
               [](uint32_t s) { return wire::encode_void(s) | wire::kImmSizeInTable; }, 0, "voids its slot and says more"}),
    [](const auto& test) { return std::string(test.param.name); });

// A socket connected to a soft-verbs context (its LID is its loopback port).
int connect_to_context(ibv_context* ctx) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(verbs::soft::context_lid(ctx));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
  return fd;
}

// Milliseconds until the context closes `fd` (reads end of stream), or -1 after `limit_ms`.
long ms_until_closed(int fd, int limit_ms) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (spent.count() > limit_ms) return -1;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) == 1) {
      char b;
      if (::recv(fd, &b, 1, 0) <= 0) return spent.count();
    }
  }
}

struct SoftContext {
  SoftContext() {
    int n = 0;
    ibv_device** list = api().get_device_list(&n);
    ctx = api().open_device(list[0]);
    api().free_device_list(list);
  }
  ~SoftContext() { api().close_device(ctx); }
  ibv_context* ctx = nullptr;
};

TEST(SoftVerbsHello, APartialHelloIsDroppedAtItsDeadline) {
  SoftContext c;
  int fd = connect_to_context(c.ctx);
  const char part[10] = {1};
  ASSERT_EQ(::send(fd, part, sizeof part, MSG_NOSIGNAL), 10);
  const long ms = ms_until_closed(fd, verbs::soft::kHelloDeadlineMs + 2000);
  ::close(fd);
  EXPECT_GE(ms, verbs::soft::kHelloDeadlineMs - 100) << "dropped before its deadline";
  EXPECT_NE(ms, -1) << "a socket that stopped mid-hello was kept past the deadline";
}

TEST(SoftVerbsHello, AMalformedHelloIsDroppedAtOnce) {
  SoftContext c;
  int fd = connect_to_context(c.ctx);
  verbs::soft::WireHeader h;
  h.op = static_cast<uint8_t>(verbs::soft::WireOp::Write);  // not a hello
  h.length = 1 << 20;
  ASSERT_EQ(::send(fd, &h, sizeof h, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof h));
  const long ms = ms_until_closed(fd, 2000);
  ::close(fd);
  EXPECT_NE(ms, -1) << "a socket whose first frame is not a hello was kept";
}

}  // namespace
