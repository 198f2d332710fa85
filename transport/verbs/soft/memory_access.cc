// Memory protection, as an HCA checks it on every access:
//  - a local scatter/gather entry names a region of the QP's protection domain by lkey and lies
//    inside it; memory the HCA writes (a receive, an RDMA READ's target) needs local write;
//  - a remote access names a region of the responder QP's protection domain by rkey, lies inside
//    it, and both the region and the QP allow it (remote write / remote read);
//  - a region deregistered while a payload streams in is no longer written.
// Device memory (registered through dma-buf) is reached with CUDA driver copies.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "transport/verbs/soft/hca.h"

namespace ringlink::verbs::soft {

bool resolve_local(Context* c, Qp* qp, const std::vector<ibv_sge>& sges, bool need_write, std::vector<Segment>& out) {
  out.clear();
  for (const ibv_sge& s : sges) {
    if (s.length == 0) continue;
    auto it = c->mrs.find(s.lkey);
    if (it == c->mrs.end()) return false;
    Mr* mr = it->second;
    if (mr->pd != qp->pd) return false;
    if (need_write && !(mr->access & IBV_ACCESS_LOCAL_WRITE)) return false;
    if (s.addr < mr->addr || s.addr + s.length > mr->addr + mr->length) return false;
    out.push_back({reinterpret_cast<std::byte*>(s.addr), s.length, mr->key, mr->gpu ? mr->cuda_ctx : nullptr});
  }
  return true;
}

uint32_t check_remote(Context* c, Qp* qp, uint64_t addr, uint64_t length, uint32_t rkey, int right, Segment& seg) {
  auto it = c->mrs.find(rkey);
  if (it == c->mrs.end() || it->second->pd != qp->pd) return kVendorBadKey;
  Mr* mr = it->second;
  if (!(mr->access & right) || !(qp->access & right)) return kVendorAccessDenied;
  if (addr < mr->addr || addr + length > mr->addr + mr->length || addr + length < addr) return kVendorOutOfBounds;
  seg = {reinterpret_cast<std::byte*>(addr), static_cast<size_t>(length), mr->key, mr->gpu ? mr->cuda_ctx : nullptr};
  return kVendorNone;
}

bool segment_alive(Context* c, const Segment& seg) { return seg.key == 0 || c->mrs.count(seg.key) > 0; }

// Host memory is written as an HCA's DMA writes it: in ascending address order, word by word,
// each store a release, so a reader that polls a word (a CTS entry's closing sequence number)
// with an acquire load sees every byte written before it. memcpy gives neither the order nor,
// for the C++ memory model, the right to poll memory it writes.
static void dma_write(std::byte* dst, const std::byte* src, size_t n) {
  size_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 8 != 0; ++i)
    __atomic_store_n(reinterpret_cast<uint8_t*>(dst + i), static_cast<uint8_t>(src[i]), __ATOMIC_RELEASE);
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, src + i, 8);
    __atomic_store_n(reinterpret_cast<uint64_t*>(dst + i), word, __ATOMIC_RELEASE);
  }
  for (; i < n; ++i)
    __atomic_store_n(reinterpret_cast<uint8_t*>(dst + i), static_cast<uint8_t>(src[i]), __ATOMIC_RELEASE);
}

bool copy_to(const Segment& dst, size_t off, const std::byte* src, size_t n) {
  if (!dst.cuda_ctx) {
    dma_write(dst.ptr + off, src, n);
    return true;
  }
  const cuda::CudaDriver* cuda = cuda::cuda_driver();
  if (!cuda || cuda->ctx_set_current(dst.cuda_ctx) != cuda::kCudaSuccess) return false;
  return cuda->memcpy_htod(reinterpret_cast<cuda::CUdeviceptr>(dst.ptr + off), src, n) == cuda::kCudaSuccess;
}

// Copies device segments into `owned` so the socket can send them (host segments go as they are).
bool stage_device_payload(TxFrame& f) {
  bool any_device = std::any_of(f.payload.begin(), f.payload.end(), [](const Segment& s) { return s.cuda_ctx; });
  if (!any_device) return true;
  const cuda::CudaDriver* cuda = cuda::cuda_driver();
  if (!cuda) return false;
  f.owned.resize(f.total);
  size_t off = 0;
  for (const Segment& s : f.payload) {
    if (s.cuda_ctx) {
      if (cuda->ctx_set_current(s.cuda_ctx) != cuda::kCudaSuccess ||
          cuda->memcpy_dtoh(f.owned.data() + off, reinterpret_cast<cuda::CUdeviceptr>(s.ptr), s.len) != cuda::kCudaSuccess)
        return false;
    } else {
      std::memcpy(f.owned.data() + off, s.ptr, s.len);
    }
    off += s.len;
  }
  f.payload.assign(1, Segment{f.owned.data(), f.total, 0, nullptr});
  return true;
}

}  // namespace ringlink::verbs::soft
