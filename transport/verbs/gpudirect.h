// GPUDirect RDMA: how CUDA memory is registered with the HCA, chosen once per transport:
//   dma-buf  ibv_reg_dmabuf_mr on a dma-buf fd from cuMemGetHandleForAddressRange (needs
//            rdma-core >= 34, a CUDA 11.7+ driver and kernel support; probed with fd -1);
//   peer memory  plain ibv_reg_mr on the device address, where nvidia_peermem (or the older
//            nv_peer_mem) is loaded;
//   staging  neither: the transport reports no device-memory support and refuses CUDA buffers;
//            the engine's staging layer (src/comm/device_staging.h) sends host slots instead.
// Options::ib_gpudirect = false (RINGLINK_IB_GPUDIRECT=off) forces staging. After data lands in
// GPU memory, GPUs before compute capability 9.0 need a flush (gpudirect_flush.h) before a kernel
// may read it; Options::ib_gdr_flush (RINGLINK_IB_GDR_FLUSH=0/1) overrides the choice.
//
// None of this has run on a machine with an HCA and a GPU together.
#pragma once

#include <memory>
#include <string>

#include "common/cuda_driver.h"
#include "ringlink/options.h"
#include "transport/verbs/mr_cache.h"
#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs {

enum class GpuDirectMode { NoCuda, DmaBuf, PeerMemory, Staging };
const char* to_string(GpuDirectMode m);

struct GpuDirect {
  GpuDirectMode mode = GpuDirectMode::NoCuda;
  std::string reason;  // why this mode
  const cuda::CudaDriver* cuda = nullptr;
  int flush_override = -1;  // Options::ib_gdr_flush: -1 auto, 0 never, 1 always

  bool direct() const { return mode == GpuDirectMode::DmaBuf || mode == GpuDirectMode::PeerMemory; }
  // Whether data written into device memory at `ptr` needs a flush before use.
  bool flush_needed(const void* ptr) const;
};

// Picks the mode for `pd` as `options` allow (ib_gpudirect, ib_gdr_flush).
GpuDirect detect_gpudirect(const VerbsApi& api, ibv_pd* pd, const Options& options);

// Registers the whole CUDA allocation containing `start` with `pd` as the mode says; `lo` and
// `len` receive the registered (page-aligned) range. Throws ringlink::Error naming `rank`.
ibv_mr* register_cuda(const VerbsApi& api, ibv_pd* pd, const GpuDirect& gdr, uintptr_t start, int access, int rank,
                      uintptr_t* lo, size_t* len);

// The CUDA buffer ID of the allocation at `p` (0 when unknown), to spot reallocated ranges.
uint64_t cuda_buffer_id(const GpuDirect& gdr, uintptr_t p);

}  // namespace ringlink::verbs
