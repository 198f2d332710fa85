// The software verbs' devices, contexts, protection domains, memory regions and completion
// queues, and the rules an HCA applies to them:
//  - one device, "soft", with one port: InfiniBand link layer, active (down after an injected
//    port-down), MTU 4096; its LID is the loopback TCP port the context listens on; GID 0 is
//    a link-local address made from the LID, GID 1 (where the host has one) its first IPv4
//    address that is not loopback, IPv4-mapped, listened on at the LID's port;
//  - a protection domain, and a CQ, cannot go while something uses it (EBUSY);
//  - a memory region covers pages that exist (pinning needs them: EFAULT otherwise), has a
//    non-zero length and valid access flags; remote write needs local write; its lkey and rkey
//    are one key, unique for the context's life;
//  - device memory is registered through dma-buf only (ibv_reg_dmabuf_mr), and needs the CUDA
//    driver (EOPNOTSUPP without it) and a valid fd;
//  - completion channels are not part of the subset (EOPNOTSUPP).
#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "transport/verbs/soft/entry_points.h"
#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {
namespace {

ibv_device* soft_device() {
  static ibv_device device = [] {
    ibv_device d{};
    d.node_type = IBV_NODE_CA;
    d.transport_type = IBV_TRANSPORT_IB;
    std::snprintf(d.name, sizeof d.name, "soft");
    std::snprintf(d.dev_name, sizeof d.dev_name, "soft");
    return d;
  }();
  return &device;
}

uint32_t new_key(Context* c) {
  // Keys are unique for the context's life and spread out, so a stale or forged key is unlikely to
  // name another region by accident.
  c->next_key += 0x9e37;
  if (c->next_key == 0) c->next_key = 0x9e37;
  return c->next_key;
}

ibv_mr* add_mr(Pd* pd, uintptr_t addr, size_t length, int access, bool gpu, cuda::CUcontext cuda_ctx) {
  Context* c = pd->ctx;
  auto* mr = new Mr;
  mr->h.self = mr;
  mr->pd = pd;
  mr->addr = addr;
  mr->length = length;
  mr->access = access;
  mr->gpu = gpu;
  mr->cuda_ctx = cuda_ctx;
  mr->key = new_key(c);
  while (c->mrs.count(mr->key)) mr->key = new_key(c);
  mr->h.verbs.context = &c->h.verbs;
  mr->h.verbs.pd = &pd->h.verbs;
  mr->h.verbs.addr = reinterpret_cast<void*>(addr);
  mr->h.verbs.length = length;
  mr->h.verbs.handle = mr->key;
  mr->h.verbs.lkey = mr->key;
  mr->h.verbs.rkey = mr->key;
  c->mrs[mr->key] = mr;
  ++pd->users;
  return &mr->h.verbs;
}

}  // namespace

bool valid_access(int access) {
  // Remote write (and atomics) need local write, as the verbs specification demands.
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(access & IBV_ACCESS_LOCAL_WRITE)) return false;
  int known = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC |
              IBV_ACCESS_RELAXED_ORDERING;
  return (access & ~known) == 0;
}

ibv_device** get_device_list(int* num) {
  auto** list = static_cast<ibv_device**>(std::calloc(2, sizeof(ibv_device*)));
  if (!list) {
    errno = ENOMEM;
    return nullptr;
  }
  list[0] = soft_device();
  if (num) *num = 1;
  return list;
}

void free_device_list(ibv_device** list) { std::free(list); }

const char* get_device_name(ibv_device* device) { return device->name; }

// GID 1's listener (see Context::host_listen_fd); quietly absent when the host has no such
// address or the port is taken there.
void open_host_listener(Context* c) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
      continue;
    c->host_addr = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr = c->host_addr;
    a.sin_port = htons(c->lid);
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      c->host_listen_fd = fd;
    } else if (fd >= 0) {
      ::close(fd);
    }
    break;
  }
  ::freeifaddrs(list);
}

ibv_context* open_device(ibv_device* device) {
  auto* c = new Context;
  c->h.self = c;
  c->h.verbs.device = device;
  c->h.verbs.cmd_fd = -1;
  c->h.verbs.num_comp_vectors = 1;
  c->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (c->listen_fd < 0 || ::bind(c->listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(c->listen_fd, SOMAXCONN) != 0 ||
      ::getsockname(c->listen_fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    if (c->listen_fd >= 0) ::close(c->listen_fd);
    delete c;
    errno = e;
    return nullptr;
  }
  c->lid = ntohs(a.sin_port);
  open_host_listener(c);
  c->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  c->async_fd = ::eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
  c->h.verbs.async_fd = c->async_fd;
  c->next_key = (static_cast<uint32_t>(c->lid) << 16) ^ 0x2b00;
  c->service = std::thread(service_main, c);
  return &c->h.verbs;
}

int close_device(ibv_context* context) {
  Context* c = of(context);
  c->stop.store(true);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(c->wake_fd, &one, sizeof one);
  c->service.join();
  for (auto& [qpn, qp] : c->qps) {
    qp->out.reset();
    qp->in.reset();
    delete qp;
  }
  for (auto& [key, mr] : c->mrs) delete mr;
  for (auto& p : c->pending) close_pending(p);
  ::close(c->listen_fd);
  if (c->host_listen_fd >= 0) ::close(c->host_listen_fd);
  ::close(c->wake_fd);
  ::close(c->async_fd);
  delete c;
  return 0;
}

int query_device(ibv_context* context, ibv_device_attr* attr) {
  Context* c = of(context);
  *attr = ibv_device_attr{};
  std::snprintf(attr->fw_ver, sizeof attr->fw_ver, "ringlink-soft-1");
  attr->node_guid = htobe64(0x0200000000000000ull | c->lid);
  attr->sys_image_guid = attr->node_guid;
  attr->max_mr_size = kMaxMrSize;
  attr->page_size_cap = 4096;
  attr->max_qp = 1 << 16;
  attr->max_qp_wr = static_cast<int>(kMaxQpWr);
  attr->max_sge = static_cast<int>(kMaxSge);
  attr->max_cq = 1 << 16;
  attr->max_cqe = kMaxCqe;
  attr->max_mr = 1 << 20;
  attr->max_pd = 1 << 16;
  attr->max_qp_rd_atom = 16;
  attr->max_qp_init_rd_atom = 16;
  attr->phys_port_cnt = 1;
  return 0;
}

int query_port(ibv_context* context, uint8_t port, ibv_port_attr* attr) {
  Context* c = of(context);
  if (port != 1) return EINVAL;
  std::lock_guard lk(c->mu);
  *attr = ibv_port_attr{};
  attr->state = c->port_down ? IBV_PORT_DOWN : IBV_PORT_ACTIVE;
  attr->phys_state = c->port_down ? 3 : 5;  // Disabled / LinkUp
  attr->max_mtu = IBV_MTU_4096;
  attr->active_mtu = IBV_MTU_4096;
  attr->gid_tbl_len = c->host_listen_fd >= 0 ? 2 : 1;
  attr->max_msg_sz = static_cast<uint32_t>(kMaxMessage);
  attr->pkey_tbl_len = 1;
  attr->lid = c->lid;
  attr->sm_lid = c->lid;
  attr->lmc = 0;
  attr->link_layer = IBV_LINK_LAYER_INFINIBAND;
  attr->active_width = 1;  // 1X
  attr->active_speed = 0;
  return 0;
}

int query_gid(ibv_context* context, uint8_t port, int index, ibv_gid* gid) {
  Context* c = of(context);
  if (port == 1 && index == 1 && c->host_listen_fd >= 0) {
    // IPv4-mapped, as a RoCE v2 GID carries its address.
    *gid = ibv_gid{};
    gid->raw[10] = 0xff;
    gid->raw[11] = 0xff;
    std::memcpy(&gid->raw[12], &c->host_addr, 4);
    return 0;
  }
  if (port != 1 || index != 0) return -1;
  // A link-local GID made from the LID, like a port GUID would make one.
  *gid = ibv_gid{};
  gid->raw[0] = 0xfe;
  gid->raw[1] = 0x80;
  gid->raw[8] = 0x02;
  gid->raw[14] = static_cast<uint8_t>(c->lid >> 8);
  gid->raw[15] = static_cast<uint8_t>(c->lid);
  return 0;
}

ibv_pd* alloc_pd(ibv_context* context) {
  Context* c = of(context);
  std::lock_guard lk(c->mu);
  auto* pd = new Pd;
  pd->h.self = pd;
  pd->h.verbs.context = context;
  pd->h.verbs.handle = c->next_key++;
  pd->ctx = c;
  return &pd->h.verbs;
}

int dealloc_pd(ibv_pd* p) {
  Pd* pd = of(p);
  std::lock_guard lk(pd->ctx->mu);
  if (pd->users > 0) return EBUSY;
  delete pd;
  return 0;
}

ibv_mr* reg_mr(ibv_pd* p, void* addr, size_t length, int access) {
  Pd* pd = of(p);
  if (length == 0 || length > kMaxMrSize || !valid_access(access)) {
    errno = EINVAL;
    return nullptr;
  }
  // The pages must exist, as pinning them would require.
  const long page = ::sysconf(_SC_PAGESIZE);
  uintptr_t first = reinterpret_cast<uintptr_t>(addr) & ~static_cast<uintptr_t>(page - 1);
  uintptr_t last = reinterpret_cast<uintptr_t>(addr) + length;
  std::vector<unsigned char> residency((last - first + static_cast<uintptr_t>(page) - 1) / static_cast<uintptr_t>(page));
  if (::mincore(reinterpret_cast<void*>(first), last - first, residency.data()) != 0 && errno == ENOMEM) {
    errno = EFAULT;
    return nullptr;
  }
  std::lock_guard lk(pd->ctx->mu);
  return add_mr(pd, reinterpret_cast<uintptr_t>(addr), length, access, false, nullptr);
}

ibv_mr* reg_dmabuf_mr(ibv_pd* p, uint64_t offset, size_t length, uint64_t iova, int fd, int access) {
  Pd* pd = of(p);
  (void)offset;
  const cuda::CudaDriver* cuda = cuda::cuda_driver();
  if (!cuda) {
    errno = EOPNOTSUPP;  // device memory is out of reach without the CUDA driver
    return nullptr;
  }
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
    errno = EBADF;
    return nullptr;
  }
  if (length == 0 || !valid_access(access) || !cuda::is_device_pointer(*cuda, reinterpret_cast<void*>(iova))) {
    errno = EINVAL;
    return nullptr;
  }
  cuda::CUcontext ctx = nullptr;
  if (!cuda::make_pointer_context_current(*cuda, reinterpret_cast<void*>(iova)) || cuda->ctx_get_current(&ctx) != cuda::kCudaSuccess) {
    errno = EINVAL;
    return nullptr;
  }
  std::lock_guard lk(pd->ctx->mu);
  return add_mr(pd, static_cast<uintptr_t>(iova), length, access, true, ctx);
}

int dereg_mr(ibv_mr* m) {
  Mr* mr = of(m);
  Context* c = mr->pd->ctx;
  std::lock_guard lk(c->mu);
  c->mrs.erase(mr->key);
  --mr->pd->users;
  delete mr;
  return 0;
}

ibv_cq* create_cq(ibv_context* context, int cqe, void* cq_context, ibv_comp_channel* channel, int) {
  Context* c = of(context);
  if (cqe < 1 || cqe > kMaxCqe || channel) {
    errno = channel ? EOPNOTSUPP : EINVAL;  // completion channels are not part of the subset
    return nullptr;
  }
  std::lock_guard lk(c->mu);
  auto* cq = new Cq;
  cq->h.self = cq;
  cq->ctx = c;
  cq->capacity = static_cast<size_t>(cqe);
  cq->h.verbs.context = context;
  cq->h.verbs.cq_context = cq_context;
  cq->h.verbs.cqe = cqe;
  return &cq->h.verbs;
}

int destroy_cq(ibv_cq* q) {
  Cq* cq = of(q);
  Context* c = cq->ctx;
  std::unique_lock lk(c->mu);
  if (cq->users > 0) return EBUSY;
  if (!retire_events_of(c, lk, q)) return EBUSY;
  delete cq;
  return 0;
}

uint16_t context_lid(ibv_context* context) { return of(context)->lid; }

}  // namespace ringlink::verbs::soft
