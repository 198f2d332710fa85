#include "transport/verbs/gpudirect.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "ringlink/error.h"

namespace ringlink::verbs {
namespace fs = std::filesystem;

const char* to_string(GpuDirectMode m) {
  switch (m) {
    case GpuDirectMode::NoCuda: return "no CUDA";
    case GpuDirectMode::DmaBuf: return "dma-buf";
    case GpuDirectMode::PeerMemory: return "peer memory";
    case GpuDirectMode::Staging: return "staging through host memory";
  }
  return "?";
}

namespace {

// Whether the peer-memory kernel module (nvidia_peermem, or the older nv_peer_mem) is loaded.
bool peer_memory_loaded() {
  const fs::path sys = "/sys";
  std::error_code ec;
  if (fs::exists(sys / "module" / "nvidia_peermem" / "version", ec)) return true;
  fs::path peers = sys / "kernel" / "mm" / "memory_peers";
  if (!fs::is_directory(peers, ec)) return false;
  for (const auto& e : fs::directory_iterator(peers, ec))
    if (e.path().filename().string().rfind("nv_mem", 0) == 0 && fs::exists(e.path() / "version", ec)) return true;
  return false;
}

}  // namespace

GpuDirect detect_gpudirect(const VerbsApi& api, ibv_pd* pd, const Options& options) {
  GpuDirect g;
  if (options.ib_gdr_flush >= 0) g.flush_override = options.ib_gdr_flush != 0 ? 1 : 0;
  std::string why;
  g.cuda = cuda::cuda_driver(&why);
  if (!g.cuda) {
    g.mode = GpuDirectMode::NoCuda;
    g.reason = why;
    return g;
  }
  if (!options.ib_gpudirect) {
    g.mode = GpuDirectMode::Staging;
    g.reason = "RINGLINK_IB_GPUDIRECT=off";
    return g;
  }
  std::vector<std::string> no;
  // dma-buf: the library entry point, the driver entry point, device support, then a probe the
  // kernel answers (EOPNOTSUPP / EPROTONOSUPPORT: no dma-buf support in the RDMA stack).
  int dmabuf_attr = 0;
  cuda::CUdevice dev0 = 0;
  if (!api.reg_dmabuf_mr) {
    no.push_back("libibverbs has no ibv_reg_dmabuf_mr (rdma-core < 34)");
  } else if (!g.cuda->mem_get_handle_for_address_range) {
    no.push_back("the CUDA driver has no cuMemGetHandleForAddressRange (< 11.7)");
  } else if (g.cuda->device_get(&dev0, 0) != cuda::kCudaSuccess ||
             g.cuda->device_get_attribute(&dmabuf_attr, cuda::kCuDeviceAttributeDmaBufSupported, dev0) != cuda::kCudaSuccess ||
             !dmabuf_attr) {
    no.push_back("the GPU does not export dma-buf");
  } else {
    errno = 0;
    ibv_mr* probe = api.reg_dmabuf_mr(pd, 0, 0, 0, -1, 0);
    int e = errno;
    if (probe) api.dereg_mr(probe);
    if (e == EOPNOTSUPP || e == EPROTONOSUPPORT)
      no.push_back(fmt::format("ibv_reg_dmabuf_mr is not supported here ({})", std::strerror(e)));
    else {
      g.mode = GpuDirectMode::DmaBuf;
      g.reason = "ibv_reg_dmabuf_mr with a dma-buf fd from cuMemGetHandleForAddressRange";
      return g;
    }
  }
  if (!api.is_soft && peer_memory_loaded()) {
    g.mode = GpuDirectMode::PeerMemory;
    g.reason = fmt::format("peer memory (nvidia_peermem) after: {}", fmt::join(no, "; "));
    return g;
  }
  no.push_back("no peer-memory module (nvidia_peermem) is loaded");
  g.mode = GpuDirectMode::Staging;
  g.reason = fmt::format("{}", fmt::join(no, "; "));
  return g;
}

bool GpuDirect::flush_needed(const void* ptr) const {
  if (flush_override >= 0) return flush_override == 1;
  if (!cuda) return false;
  // Compute capability per device, looked up once.
  static std::mutex mu;
  static std::vector<int> major_by_device;
  int ordinal = -1;
  if (cuda->pointer_get_attribute(&ordinal, cuda::kCuPointerAttributeDeviceOrdinal, reinterpret_cast<cuda::CUdeviceptr>(ptr)) !=
          cuda::kCudaSuccess ||
      ordinal < 0)
    return true;  // unknown: flushing is always safe
  std::lock_guard lk(mu);
  if (major_by_device.size() <= static_cast<size_t>(ordinal)) major_by_device.resize(static_cast<size_t>(ordinal) + 1, -1);
  int& major = major_by_device[static_cast<size_t>(ordinal)];
  if (major < 0) {
    cuda::CUdevice dev = 0;
    if (cuda->device_get(&dev, ordinal) != cuda::kCudaSuccess ||
        cuda->device_get_attribute(&major, cuda::kCuDeviceAttributeComputeCapabilityMajor, dev) != cuda::kCudaSuccess)
      major = 0;
  }
  // Hopper and later order NIC writes before a later kernel's reads; older GPUs need the READ.
  return major < 9;
}

ibv_mr* register_cuda(const VerbsApi& api, ibv_pd* pd, const GpuDirect& gdr, uintptr_t start, int access, int rank,
                      uintptr_t* lo_out, size_t* len_out) {
  const cuda::CudaDriver& cuda = *gdr.cuda;
  cuda::CUdeviceptr base = 0;
  size_t size = 0;
  cuda::CUresult r = cuda.mem_get_address_range(&base, &size, static_cast<cuda::CUdeviceptr>(start));
  if (r != cuda::kCudaSuccess)
    throw InvalidArgumentError(rank, -1, "register memory",
                               fmt::format("{:#x} is not CUDA device memory: {}", start, cuda::cuda_error_text(cuda, r)));
  // The whole allocation, page-aligned: later buffers inside it hit the cache.
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t lo = static_cast<uintptr_t>(base) & ~(page - 1);
  uintptr_t hi = (static_cast<uintptr_t>(base) + size + page - 1) & ~(page - 1);
  ibv_mr* mr = nullptr;
  if (gdr.mode == GpuDirectMode::DmaBuf) {
    int fd = -1;
    r = cuda.mem_get_handle_for_address_range(&fd, static_cast<cuda::CUdeviceptr>(lo), hi - lo, cuda::kCuMemRangeHandleTypeDmaBufFd,
                                              0);
    if (r != cuda::kCudaSuccess)
      throw TransportError(rank, -1, "register memory",
                           fmt::format("cuMemGetHandleForAddressRange failed for {:#x}+{}: {}", lo, hi - lo,
                                       cuda::cuda_error_text(cuda, r)));
    mr = api.reg_dmabuf_mr(pd, 0, hi - lo, lo, fd, access);
    int e = errno;
    ::close(fd);  // the registration holds its own reference to the dma-buf
    if (!mr)
      throw TransportError(rank, -1, "register memory",
                           fmt::format("ibv_reg_dmabuf_mr of CUDA memory {:#x}+{} failed: {}", lo, hi - lo,
                                       std::strerror(e)));
  } else {
    mr = api.reg_mr(pd, reinterpret_cast<void*>(lo), hi - lo, access);
    if (!mr)
      throw TransportError(rank, -1, "register memory",
                           fmt::format("ibv_reg_mr of CUDA memory {:#x}+{} (peer memory) failed: {}", lo, hi - lo,
                                       std::strerror(errno)));
  }
  log::trace("registered CUDA memory {:#x}+{} through {}", lo, hi - lo, to_string(gdr.mode));
  *lo_out = lo;
  *len_out = hi - lo;
  return mr;
}

uint64_t cuda_buffer_id(const GpuDirect& gdr, uintptr_t p) {
  if (!gdr.cuda) return 0;
  unsigned long long id = 0;
  if (gdr.cuda->pointer_get_attribute(&id, cuda::kCuPointerAttributeBufferId, static_cast<cuda::CUdeviceptr>(p)) != cuda::kCudaSuccess)
    return 0;
  return id;
}

}  // namespace ringlink::verbs
