// The software verbs enforce what an HCA enforces: the QP state machine, keys, bounds, access
// rights, receive-not-ready, in-order completions, flushes after an error, a vanished peer, and
// the injected faults. Two contexts in one process stand for two hosts.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <infiniband/verbs.h>

#include <poll.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "transport/verbs/soft/soft_verbs.h"
#include "transport/verbs/verbs_api.h"

using namespace std::chrono_literals;
using ringlink::verbs::VerbsApi;
namespace soft = ringlink::verbs::soft;

namespace {

const VerbsApi& api() { return ringlink::verbs::soft_verbs(); }

struct Host {
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
  std::vector<ibv_qp*> qps;
  std::vector<ibv_mr*> mrs;

  Host() {
    int n = 0;
    ibv_device** list = api().get_device_list(&n);
    EXPECT_EQ(n, 1);
    ctx = api().open_device(list[0]);
    api().free_device_list(list);
    pd = api().alloc_pd(ctx);
    cq = api().create_cq(ctx, 4096, nullptr, nullptr, 0);
  }
  ~Host() {
    for (auto* qp : qps) api().destroy_qp(qp);
    for (auto* mr : mrs) api().dereg_mr(mr);
    api().destroy_cq(cq);
    api().dealloc_pd(pd);
    api().close_device(ctx);
  }
  ibv_qp* qp(uint32_t max_send = 64, uint32_t max_recv = 64) {
    ibv_qp_init_attr a{};
    a.send_cq = cq;
    a.recv_cq = cq;
    a.qp_type = IBV_QPT_RC;
    a.cap.max_send_wr = max_send;
    a.cap.max_recv_wr = max_recv;
    a.cap.max_send_sge = 2;
    a.cap.max_recv_sge = 2;
    a.cap.max_inline_data = 64;
    ibv_qp* q = api().create_qp(pd, &a);
    qps.push_back(q);
    return q;
  }
  ibv_mr* reg(void* p, size_t n, int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ) {
    ibv_mr* mr = api().reg_mr(pd, p, n, access);
    if (mr) mrs.push_back(mr);
    return mr;
  }
  uint16_t lid() const { return soft::context_lid(ctx); }
};

int to_init(ibv_qp* qp) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = 1;
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  return api().modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

int to_rtr(ibv_qp* qp, uint16_t dlid, uint32_t dest_qpn) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = IBV_MTU_4096;
  a.dest_qp_num = dest_qpn;
  a.rq_psn = 0;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = 1;  // 0.01 ms per RNR retry: keeps the RNR test short
  a.ah_attr.dlid = dlid;
  a.ah_attr.port_num = 1;
  return api().modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

int to_rts(ibv_qp* qp, uint8_t rnr_retry = 7) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14;
  a.retry_cnt = 7;
  a.rnr_retry = rnr_retry;
  a.sq_psn = 0;
  a.max_rd_atomic = 1;
  return api().modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                             IBV_QP_MAX_QP_RD_ATOMIC);
}

void connect(Host& a, ibv_qp* qa, Host& b, ibv_qp* qb, uint8_t rnr_retry = 7) {
  ASSERT_EQ(to_init(qa), 0);
  ASSERT_EQ(to_init(qb), 0);
  ASSERT_EQ(to_rtr(qa, b.lid(), qb->qp_num), 0);
  ASSERT_EQ(to_rtr(qb, a.lid(), qa->qp_num), 0);
  ASSERT_EQ(to_rts(qa, rnr_retry), 0);
  ASSERT_EQ(to_rts(qb, rnr_retry), 0);
}

std::vector<ibv_wc> poll(ibv_cq* cq, size_t want, std::chrono::milliseconds limit = 5000ms) {
  std::vector<ibv_wc> got;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
    ibv_wc wc[16];
    int n = api().poll_cq(cq, 16, wc);
    for (int i = 0; i < n; ++i) got.push_back(wc[i]);
    if (n == 0) std::this_thread::sleep_for(100us);
  }
  return got;
}

// One send work request with one scatter entry (none when `len` is 0).
int post_one(ibv_qp* qp, ibv_wr_opcode opcode, uint64_t wr_id, void* buf, uint32_t len, uint32_t lkey,
             uint64_t raddr = 0, uint32_t rkey = 0, uint32_t imm = 0, unsigned flags = IBV_SEND_SIGNALED) {
  ibv_sge sge{reinterpret_cast<uint64_t>(buf), len, lkey};
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = len ? 1 : 0;
  wr.opcode = opcode;
  wr.send_flags = flags;
  wr.imm_data = imm;
  wr.wr.rdma.remote_addr = raddr;
  wr.wr.rdma.rkey = rkey;
  ibv_send_wr* bad = nullptr;
  return api().post_send(qp, &wr, &bad);
}

int post_write(ibv_qp* qp, uint64_t wr_id, void* src, uint32_t len, uint32_t lkey, uint64_t raddr, uint32_t rkey,
               bool with_imm = false, uint32_t imm = 0, unsigned flags = IBV_SEND_SIGNALED) {
  return post_one(qp, with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE, wr_id, src, len, lkey, raddr, rkey,
                  imm, flags);
}

int post_recv(ibv_qp* qp, uint64_t wr_id, void* buf = nullptr, uint32_t len = 0, uint32_t lkey = 0) {
  ibv_sge sge{reinterpret_cast<uint64_t>(buf), len, lkey};
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = &sge;
  wr.num_sge = buf ? 1 : 0;
  ibv_recv_wr* bad = nullptr;
  return api().post_recv(qp, &wr, &bad);
}

ibv_qp_state state_of(ibv_qp* qp) {
  ibv_qp_attr a{};
  ibv_qp_init_attr i{};
  api().query_qp(qp, &a, IBV_QP_STATE, &i);
  return a.qp_state;
}

TEST(SoftVerbs, ListsOneActivePort) {
  Host h;
  ibv_device_attr dev{};
  ASSERT_EQ(api().query_device(h.ctx, &dev), 0);
  EXPECT_EQ(dev.phys_port_cnt, 1);
  ibv_port_attr port{};
  ASSERT_EQ(api().query_port(h.ctx, 1, &port), 0);
  EXPECT_EQ(port.state, IBV_PORT_ACTIVE);
  EXPECT_EQ(port.link_layer, IBV_LINK_LAYER_INFINIBAND);
  EXPECT_EQ(port.lid, h.lid());
  EXPECT_NE(api().query_port(h.ctx, 2, &port), 0);
}

TEST(SoftVerbs, QpStateMachineFollowsTheRules) {
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  EXPECT_EQ(state_of(qa), IBV_QPS_RESET);
  // Posting before RTS is refused; so is a receive in RESET.
  char byte = 0;
  EXPECT_EQ(post_write(qa, 1, &byte, 0, 0, 0, 0), EINVAL);
  EXPECT_EQ(post_recv(qa, 1), EINVAL);
  // RESET -> RTR skips INIT; RESET -> INIT without the port is incomplete.
  EXPECT_EQ(to_rtr(qa, b.lid(), qb->qp_num), EINVAL);
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  EXPECT_EQ(api().modify_qp(qa, &attr, IBV_QP_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX), EINVAL);
  // An attribute that does not belong to the transition is refused too.
  attr.port_num = 1;
  EXPECT_EQ(api().modify_qp(qa, &attr, IBV_QP_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
                                           IBV_QP_TIMEOUT),
            EINVAL);
  ASSERT_EQ(to_init(qa), 0);
  EXPECT_EQ(state_of(qa), IBV_QPS_INIT);
  EXPECT_EQ(post_recv(qa, 1), 0);  // receives may be posted from INIT on
  EXPECT_EQ(post_write(qa, 1, &byte, 0, 0, 0, 0), EINVAL);
  EXPECT_EQ(to_rts(qa), EINVAL);  // INIT -> RTS skips RTR
  ASSERT_EQ(to_init(qb), 0);
  ASSERT_EQ(to_rtr(qa, b.lid(), qb->qp_num), 0);
  EXPECT_EQ(post_write(qa, 1, &byte, 0, 0, 0, 0), EINVAL);  // RTR receives only
  ASSERT_EQ(to_rtr(qb, a.lid(), qa->qp_num), 0);
  ASSERT_EQ(to_rts(qa), 0);
  ASSERT_EQ(to_rts(qb), 0);
  EXPECT_EQ(state_of(qa), IBV_QPS_RTS);
  EXPECT_EQ(to_init(qa), EINVAL);  // no way back but RESET / ERR
  // ERR flushes the posted receive; RESET then INIT start over.
  attr = {};
  attr.qp_state = IBV_QPS_ERR;
  ASSERT_EQ(api().modify_qp(qa, &attr, IBV_QP_STATE), 0);
  auto wcs = poll(a.cq, 1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_WR_FLUSH_ERR);
  attr.qp_state = IBV_QPS_RESET;
  ASSERT_EQ(api().modify_qp(qa, &attr, IBV_QP_STATE), 0);
  EXPECT_EQ(to_init(qa), 0);
}

TEST(SoftVerbs, WriteWithImmediateLandsAndConsumesAReceive) {
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  std::vector<uint8_t> src(1 << 20), dst(1 << 20, 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 3);
  ibv_mr* ms = a.reg(src.data(), src.size());
  ibv_mr* md = b.reg(dst.data(), dst.size());
  ASSERT_TRUE(ms && md);
  ASSERT_EQ(post_recv(qb, 77), 0);
  ASSERT_EQ(post_write(qa, 5, src.data(), static_cast<uint32_t>(src.size()), ms->lkey,
                       reinterpret_cast<uint64_t>(dst.data()), md->rkey, true, htonl(0xabcd)),
            0);
  auto rw = poll(b.cq, 1);
  ASSERT_EQ(rw.size(), 1u);
  EXPECT_EQ(rw[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(rw[0].opcode, IBV_WC_RECV_RDMA_WITH_IMM);
  EXPECT_EQ(rw[0].wr_id, 77u);
  EXPECT_EQ(ntohl(rw[0].imm_data), 0xabcdu);
  EXPECT_EQ(rw[0].byte_len, src.size());
  EXPECT_EQ(src, dst);
  auto sw = poll(a.cq, 1);
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(sw[0].wr_id, 5u);
  EXPECT_EQ(sw[0].opcode, IBV_WC_RDMA_WRITE);
}

TEST(SoftVerbs, SendAndReadMoveBytes) {
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  std::vector<uint8_t> src(5000, 0x5a), dst(8192, 0), remote(4096), back(4096, 0);
  for (size_t i = 0; i < remote.size(); ++i) remote[i] = static_cast<uint8_t>(i);
  ibv_mr* ms = a.reg(src.data(), src.size());
  ibv_mr* md = b.reg(dst.data(), dst.size());
  ibv_mr* mremote = b.reg(remote.data(), remote.size());
  ibv_mr* mback = a.reg(back.data(), back.size());
  ASSERT_EQ(post_recv(qb, 9, dst.data(), static_cast<uint32_t>(dst.size()), md->lkey), 0);
  ASSERT_EQ(post_one(qa, IBV_WR_SEND, 1, src.data(), static_cast<uint32_t>(src.size()), ms->lkey), 0);
  auto rw = poll(b.cq, 1);
  ASSERT_EQ(rw.size(), 1u);
  EXPECT_EQ(rw[0].opcode, IBV_WC_RECV);
  EXPECT_EQ(rw[0].byte_len, 5000u);
  EXPECT_EQ(dst[4999], 0x5a);
  EXPECT_EQ(dst[5000], 0);

  ASSERT_EQ(post_one(qa, IBV_WR_RDMA_READ, 2, back.data(), 4096, mback->lkey, reinterpret_cast<uint64_t>(remote.data()),
                     mremote->rkey),
            0);
  auto sw = poll(a.cq, 2);
  ASSERT_EQ(sw.size(), 2u);
  EXPECT_EQ(sw[0].wr_id, 1u);
  EXPECT_EQ(sw[1].wr_id, 2u);
  EXPECT_EQ(sw[1].opcode, IBV_WC_RDMA_READ);
  EXPECT_EQ(sw[1].status, IBV_WC_SUCCESS);
  EXPECT_EQ(back, remote);
}

TEST(SoftVerbs, InlineDataIsTakenAtPostTime) {
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  uint64_t value = 0x1122334455667788ull, target = 0;
  ibv_mr* md = b.reg(&target, sizeof target);
  ASSERT_EQ(post_recv(qb, 1), 0);
  // No lkey: inline data needs no registration.
  ASSERT_EQ(post_write(qa, 1, &value, 8, 0, reinterpret_cast<uint64_t>(&target), md->rkey, true, 0,
                       IBV_SEND_SIGNALED | IBV_SEND_INLINE),
            0);
  value = 0;
  ASSERT_EQ(poll(b.cq, 1).size(), 1u);
  EXPECT_EQ(target, 0x1122334455667788ull);
  // Inline data beyond the QP's limit is refused.
  std::vector<char> big(65);
  EXPECT_EQ(post_write(qa, 2, big.data(), 65, 0, reinterpret_cast<uint64_t>(&target), md->rkey, false, 0,
                       IBV_SEND_INLINE),
            EINVAL);
}

TEST(SoftVerbs, CompletionsArriveInPostingOrder) {
  Host a, b;
  ibv_qp* qa = a.qp(256, 256);
  ibv_qp* qb = b.qp(256, 256);
  connect(a, qa, b, qb);
  std::vector<uint8_t> src(1 << 16, 1), dst(1 << 16, 0);
  ibv_mr* ms = a.reg(src.data(), src.size());
  ibv_mr* md = b.reg(dst.data(), dst.size());
  for (int i = 0; i < 200; ++i) ASSERT_EQ(post_recv(qb, 1000 + i), 0);
  for (int i = 0; i < 200; ++i) {
    uint32_t len = static_cast<uint32_t>((i * 997) % src.size());
    ASSERT_EQ(post_write(qa, i, src.data(), len, ms->lkey, reinterpret_cast<uint64_t>(dst.data()), md->rkey, true,
                         static_cast<uint32_t>(i)),
              0);
  }
  auto sw = poll(a.cq, 200);
  auto rw = poll(b.cq, 200);
  ASSERT_EQ(sw.size(), 200u);
  ASSERT_EQ(rw.size(), 200u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(sw[i].wr_id, static_cast<uint64_t>(i));
    EXPECT_EQ(rw[i].wr_id, static_cast<uint64_t>(1000 + i));
    EXPECT_EQ(rw[i].imm_data, static_cast<uint32_t>(i));
  }
}

struct AccessCase {
  const char* name;
  int target_access;
  int64_t offset;       // added to the remote address
  uint32_t key_xor;     // applied to the rkey
  uint32_t vendor;
};

class RemoteAccess : public ::testing::TestWithParam<AccessCase> {};

TEST_P(RemoteAccess, IsARemoteAccessErrorAndFlushesTheRest) {
  const AccessCase& c = GetParam();
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  std::vector<uint8_t> src(4096, 9), dst(4096, 0);
  ibv_mr* ms = a.reg(src.data(), src.size());
  ibv_mr* md = b.reg(dst.data(), dst.size(), c.target_access);
  ASSERT_TRUE(md);
  ASSERT_EQ(post_recv(qb, 50), 0);
  uint64_t raddr = reinterpret_cast<uint64_t>(dst.data()) + static_cast<uint64_t>(c.offset);
  ASSERT_EQ(post_write(qa, 1, src.data(), 4096, ms->lkey, raddr, md->rkey ^ c.key_xor, false, 0, 0), 0);  // unsignalled
  ASSERT_EQ(post_write(qa, 2, src.data(), 16, ms->lkey, reinterpret_cast<uint64_t>(dst.data()), md->rkey), 0);
  auto sw = poll(a.cq, 2);
  ASSERT_EQ(sw.size(), 2u) << (sw.empty() ? -1 : sw[0].status) << " " << (sw.empty() ? 0 : sw[0].wr_id);
  EXPECT_EQ(sw[0].wr_id, 1u);  // errors complete even when unsignalled
  EXPECT_EQ(sw[0].status, IBV_WC_REM_ACCESS_ERR);
  EXPECT_EQ(sw[0].vendor_err, c.vendor) << soft::vendor_error_text(sw[0].vendor_err);
  EXPECT_EQ(sw[1].status, IBV_WC_WR_FLUSH_ERR);
  EXPECT_EQ(state_of(qa), IBV_QPS_ERR);
  // Later work on the requester flushes at once.
  EXPECT_EQ(post_write(qa, 3, src.data(), 16, ms->lkey, reinterpret_cast<uint64_t>(dst.data()), md->rkey), 0);
  auto later = poll(a.cq, 1);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].status, IBV_WC_WR_FLUSH_ERR);
  // The responder's QP fails too: its receive flushes and an async event says why.
  auto rw = poll(b.cq, 1);
  ASSERT_EQ(rw.size(), 1u);
  EXPECT_EQ(rw[0].status, IBV_WC_WR_FLUSH_ERR);
  ibv_async_event ev{};
  ASSERT_EQ(api().get_async_event(b.ctx, &ev), 0);
  EXPECT_EQ(ev.event_type, IBV_EVENT_QP_ACCESS_ERR);
  EXPECT_EQ(ev.element.qp, qb);
  api().ack_async_event(&ev);
  EXPECT_EQ(dst[0], 0) << "a rejected write must not land";
}

INSTANTIATE_TEST_SUITE_P(
    Rules, RemoteAccess,
    ::testing::Values(AccessCase{"WrongKey", IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, 0, 0x10000, soft::kVendorBadKey},
                      AccessCase{"PastTheEnd", IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, 1, 0, soft::kVendorOutOfBounds},
                      AccessCase{"BeforeTheStart", IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, -4096, 0,
                                 soft::kVendorOutOfBounds},
                      AccessCase{"NoRemoteWrite", IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ, 0, 0,
                                 soft::kVendorAccessDenied}),
    [](const auto& test) { return std::string(test.param.name); });

// Makes `b`'s QP fail a write from `a` with a wrong key, which raises IBV_EVENT_QP_ACCESS_ERR on b.
ibv_qp* qp_with_access_error(Host& a, Host& b, std::vector<uint8_t>& dst) {
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  static uint8_t src[16] = {};
  ibv_mr* ms = a.reg(src, sizeof src);
  ibv_mr* md = b.reg(dst.data(), dst.size());
  EXPECT_EQ(post_write(qa, 1, src, sizeof src, ms->lkey, reinterpret_cast<uint64_t>(dst.data()), md->rkey ^ 0x10000), 0);
  EXPECT_EQ(poll(a.cq, 1).size(), 1u);
  // The responder raises the event as it rejects the write; give it the moment that takes.
  pollfd p{b.ctx->async_fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 5000), 1) << "no asynchronous event on the responder";
  return qb;
}

void forget_qp(Host& h, ibv_qp* q) { std::erase(h.qps, q); }

TEST(SoftVerbs, AQpOutlivesTheAcknowledgementOfItsEvents) {
  // As libibverbs: destroying a QP waits until every event naming it that was handed out is
  // acknowledged, so a reader may still look at event.element.qp.
  Host a, b;
  std::vector<uint8_t> dst(64, 0);
  ibv_qp* qb = qp_with_access_error(a, b, dst);
  ibv_async_event ev{};
  ASSERT_EQ(api().get_async_event(b.ctx, &ev), 0);
  ASSERT_EQ(ev.element.qp, qb);
  std::atomic<bool> destroyed{false};
  std::thread destroyer([&] {
    EXPECT_EQ(api().destroy_qp(qb), 0);
    destroyed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(destroyed.load()) << "destroy_qp returned while an event naming the QP was not acknowledged";
  EXPECT_EQ(ev.element.qp->qp_num, qb->qp_num);  // still readable
  api().ack_async_event(&ev);
  destroyer.join();
  EXPECT_TRUE(destroyed.load());
  forget_qp(b, qb);
}

TEST(SoftVerbs, DestroyingAQpDropsItsQueuedEvents) {
  Host a, b;
  std::vector<uint8_t> dst(64, 0);
  ibv_qp* qb = qp_with_access_error(a, b, dst);
  ASSERT_EQ(api().destroy_qp(qb), 0);
  forget_qp(b, qb);
  ibv_async_event ev{};
  EXPECT_NE(api().get_async_event(b.ctx, &ev), 0) << "an event of a destroyed QP was handed out";
}

TEST(SoftVerbs, BadLkeyIsALocalProtectionError) {
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  std::vector<uint8_t> src(64), dst(64);
  ibv_mr* ms = a.reg(src.data(), src.size());
  ibv_mr* md = b.reg(dst.data(), dst.size());
  ASSERT_EQ(post_write(qa, 1, src.data(), 64, ms->lkey + 1, reinterpret_cast<uint64_t>(dst.data()), md->rkey), 0);
  auto sw = poll(a.cq, 1);
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].status, IBV_WC_LOC_PROT_ERR);
}

TEST(SoftVerbs, ReceiverNotReadyWaitsOrFailsByRetryCount) {
  Host a, b;
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb, /*rnr_retry=*/7);  // 7: retry for ever
  uint32_t v = 42, target = 0;
  ibv_mr* md = b.reg(&target, 4);
  ASSERT_EQ(post_write(qa, 1, &v, 4, 0, reinterpret_cast<uint64_t>(&target), md->rkey, true, 0,
                       IBV_SEND_SIGNALED | IBV_SEND_INLINE),
            0);
  {
    auto early = poll(a.cq, 1, 100ms);
    EXPECT_TRUE(early.empty()) << "nothing completes while no receive is posted: status "
                               << (early.empty() ? -1 : early[0].status) << " opcode " << (early.empty() ? -1 : early[0].opcode)
                               << " wr " << (early.empty() ? 0 : early[0].wr_id) << " qp " << (early.empty() ? 0 : early[0].qp_num) << " qa " << qa->qp_num;
  }
  ASSERT_EQ(post_recv(qb, 1), 0);
  auto sw = poll(a.cq, 1);
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(target, 42u);

  Host c, d;
  ibv_qp* qc = c.qp();
  ibv_qp* qd = d.qp();
  connect(c, qc, d, qd, /*rnr_retry=*/2);
  ibv_mr* md2 = d.reg(&target, 4);
  ASSERT_EQ(post_write(qc, 1, &v, 4, 0, reinterpret_cast<uint64_t>(&target), md2->rkey, true, 0,
                       IBV_SEND_SIGNALED | IBV_SEND_INLINE),
            0);
  auto t0 = std::chrono::steady_clock::now();
  auto fw = poll(c.cq, 1);
  ASSERT_EQ(fw.size(), 1u);
  EXPECT_EQ(fw[0].status, IBV_WC_RNR_RETRY_EXC_ERR);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(SoftVerbs, VanishedPeerIsRetryExceeded) {
  Host a;
  ibv_qp* qa = a.qp();
  std::vector<uint8_t> src(4096, 1);
  ibv_mr* ms = a.reg(src.data(), src.size());
  uint64_t raddr = 0;
  uint32_t rkey = 0;
  {
    Host b;
    ibv_qp* qb = b.qp();
    connect(a, qa, b, qb);
    std::vector<uint8_t> dst(4096);
    ibv_mr* md = b.reg(dst.data(), dst.size());
    raddr = reinterpret_cast<uint64_t>(dst.data());
    rkey = md->rkey;
  }  // b's process "dies": its sockets close
  std::this_thread::sleep_for(20ms);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(post_write(qa, 1, src.data(), 4096, ms->lkey, raddr, rkey), 0);
  auto sw = poll(a.cq, 1);
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].status, IBV_WC_RETRY_EXC_ERR);
  EXPECT_EQ(sw[0].vendor_err, soft::kVendorPeerGone);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

class InjectedFault : public ::testing::TestWithParam<std::pair<const char*, ibv_wc_status>> {};

TEST_P(InjectedFault, BecomesTheRightCompletion) {
  auto [spec, expected] = GetParam();
  Host a, b;
  soft::set_fault(a.ctx, soft::parse_fault(spec));
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  std::vector<uint8_t> src(4096, 1), dst(4096);
  ibv_mr* ms = a.reg(src.data(), src.size());
  ibv_mr* md = b.reg(dst.data(), dst.size());
  for (int i = 0; i < 3; ++i) ASSERT_EQ(post_recv(qb, i), 0);
  auto write = [&](int i) {
    return post_write(qa, i, src.data(), 4096, ms->lkey, reinterpret_cast<uint64_t>(dst.data()), md->rkey, true);
  };
  ASSERT_EQ(write(0), 0);
  auto first = poll(a.cq, 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].status, IBV_WC_SUCCESS);  // the fault fires on the second write
  ASSERT_EQ(write(1), 0);
  ASSERT_EQ(write(2), 0);
  auto sw = poll(a.cq, 2);
  ASSERT_EQ(sw.size(), 2u);
  EXPECT_EQ(sw[0].status, expected) << spec;
  EXPECT_EQ(sw[1].status, IBV_WC_WR_FLUSH_ERR);
}

INSTANTIATE_TEST_SUITE_P(Kinds, InjectedFault,
                         ::testing::Values(std::pair{"bad-rkey:2", IBV_WC_REM_ACCESS_ERR},
                                           std::pair{"oob-write:2", IBV_WC_REM_ACCESS_ERR},
                                           std::pair{"drop-peer:2", IBV_WC_RETRY_EXC_ERR}),
                         [](const auto& test) {
                           std::string n = test.param.first;
                           return n.substr(0, n.find('-')) + "_" + n.substr(n.find('-') + 1, n.find(':') - n.find('-') - 1);
                         });

TEST(SoftVerbs, PortDownRaisesAnAsyncEvent) {
  Host a, b;
  soft::set_fault(a.ctx, soft::parse_fault("port-down"));
  ibv_qp* qa = a.qp();
  ibv_qp* qb = b.qp();
  connect(a, qa, b, qb);
  uint32_t v = 1, target = 0;
  ibv_mr* md = b.reg(&target, 4);
  ASSERT_EQ(post_write(qa, 1, &v, 4, 0, reinterpret_cast<uint64_t>(&target), md->rkey, false, 0,
                       IBV_SEND_SIGNALED | IBV_SEND_INLINE),
            0);
  auto sw = poll(a.cq, 1);
  ASSERT_EQ(sw.size(), 1u);
  EXPECT_EQ(sw[0].status, IBV_WC_RETRY_EXC_ERR);
  ibv_async_event ev{};
  ASSERT_EQ(api().get_async_event(a.ctx, &ev), 0);
  EXPECT_EQ(ev.event_type, IBV_EVENT_PORT_ERR);
  ibv_port_attr port{};
  api().query_port(a.ctx, 1, &port);
  EXPECT_EQ(port.state, IBV_PORT_DOWN);
}

TEST(SoftVerbs, FaultSpecsParse) {
  EXPECT_EQ(soft::parse_fault("bad-rkey").kind, soft::Fault::Kind::BadRkey);
  EXPECT_EQ(soft::parse_fault("drop-peer:7").after, 7u);
  EXPECT_THROW(soft::parse_fault("melt-down"), std::invalid_argument);
  EXPECT_THROW(soft::parse_fault("bad-rkey:0"), std::invalid_argument);
}

TEST(SoftVerbs, RegistrationRulesHold) {
  Host a;
  std::vector<uint8_t> buf(4096);
  // Remote write without local write is invalid; so is an empty region.
  EXPECT_EQ(api().reg_mr(a.pd, buf.data(), buf.size(), IBV_ACCESS_REMOTE_WRITE), nullptr);
  EXPECT_EQ(api().reg_mr(a.pd, buf.data(), 0, IBV_ACCESS_LOCAL_WRITE), nullptr);
  // Unmapped memory cannot be registered: a page just unmapped (a fixed address may be mapped,
  // e.g. ThreadSanitizer keeps its shadow at 1 << 46).
  void* gone = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(gone, MAP_FAILED);
  ASSERT_EQ(::munmap(gone, 4096), 0);
  EXPECT_EQ(api().reg_mr(a.pd, gone, 4096, IBV_ACCESS_LOCAL_WRITE), nullptr);
  EXPECT_EQ(errno, EFAULT);
  // A protection domain in use cannot go.
  ibv_mr* mr = a.reg(buf.data(), buf.size());
  ASSERT_TRUE(mr);
  EXPECT_EQ(api().dealloc_pd(a.pd), EBUSY);
}

}  // namespace
