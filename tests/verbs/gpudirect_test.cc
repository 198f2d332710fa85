// GPUDirect paths of the verbs transport with CUDA device buffers, over the software verbs
// (which reach device memory registered through dma-buf with driver copies). Skips where no GPU
// and CUDA driver are present; no HCA is involved.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "ringlink/error.h"
#include "transport.h"
#include "common/cuda_driver.h"
#include "transport/verbs/verbs_transport.h"
#include "transport_pair.h"

using namespace std::chrono_literals;
using namespace ringlink;
using namespace ringlink::verbs;

namespace {

const cuda::CudaDriver* cuda_or_skip() {
  std::string why;
  const cuda::CudaDriver* cuda = cuda::cuda_driver(&why);
  if (cuda) {
    cuda::CUdevice dev = 0;
    cuda::CUcontext ctx = nullptr;
    if (cuda->device_get(&dev, 0) == cuda::kCudaSuccess && cuda->primary_ctx_retain(&ctx, dev) == cuda::kCudaSuccess)
      cuda->ctx_set_current(ctx);
  }
  return cuda;
}

#define REQUIRE_CUDA(cuda)                                               \
  const cuda::CudaDriver* cuda = cuda_or_skip();                               \
  if (!cuda) {                                                           \
    std::string why;                                                     \
    cuda::cuda_driver(&why);                                                   \
    GTEST_SKIP() << "no GPU with a CUDA driver here: " << why;           \
  }

struct DeviceBuffer {
  DeviceBuffer(const cuda::CudaDriver& c, size_t n) : cuda(c), bytes(n) {
    EXPECT_EQ(cuda.mem_alloc(&ptr, n ? n : 1), cuda::kCudaSuccess);
  }
  ~DeviceBuffer() { cuda.mem_free(ptr); }
  void* get() const { return reinterpret_cast<void*>(ptr); }
  const cuda::CudaDriver& cuda;
  size_t bytes;
  cuda::CUdeviceptr ptr = 0;
};

using Pair = ringlink::testing::TransportPair;
using ringlink::testing::pattern;

// Device -> device, host -> device and device -> host, each size, bitwise.
void exchange_all(const cuda::CudaDriver& cuda, Pair& p, size_t n) {
  auto src = pattern(n, static_cast<uint32_t>(n % 251));
  DeviceBuffer a(cuda, n), b(cuda, n);
  ASSERT_EQ(cuda.memcpy_htod(a.ptr, src.data(), n), cuda::kCudaSuccess);
  ASSERT_EQ(cuda.memset_d8(b.ptr, 0, n ? n : 1), cuda::kCudaSuccess);
  {
    auto r = p.c[1]->irecv(b.get(), n, nullptr, 1);
    auto s = p.c[0]->isend(a.get(), n, nullptr, 1);
    ASSERT_TRUE(p.drive({r.get(), s.get()}, 30s)) << n << " bytes, device to device";
    EXPECT_EQ(r->bytes(), n);
  }
  std::vector<uint8_t> back(n, 0);
  ASSERT_EQ(cuda.memcpy_dtoh(back.data(), b.ptr, n), cuda::kCudaSuccess);
  EXPECT_EQ(back, src) << n << " bytes, device to device";
  std::vector<uint8_t> host_in(n, 0);
  auto host_src = pattern(n, 7);
  {
    auto r1 = p.c[0]->irecv(host_in.data(), n, nullptr, 2);
    auto s1 = p.c[1]->isend(b.get(), n, nullptr, 2);  // device -> host
    ASSERT_TRUE(p.drive({r1.get(), s1.get()}, 30s));
  }
  {
    auto r2 = p.c[1]->irecv(b.get(), n, nullptr, 3);  // b is free again: host -> device
    auto s2 = p.c[0]->isend(host_src.data(), n, nullptr, 3);
    ASSERT_TRUE(p.drive({r2.get(), s2.get()}, 30s));
  }
  EXPECT_EQ(host_in, src) << n << " bytes, device to host";
  ASSERT_EQ(cuda.memcpy_dtoh(back.data(), b.ptr, n), cuda::kCudaSuccess);
  EXPECT_EQ(back, host_src) << n << " bytes, host to device";
}

const size_t kSizes[] = {0, 1, 100, 4096, (1u << 20) + 3, 16u << 20};

TEST(GpuDirect, DmaBufRegistrationCarriesDeviceBuffers) {
  REQUIRE_CUDA(cuda);
  Options o = ringlink::testing::soft_verbs_options();
  o.ib_gdr_flush = 1;  // Hopper needs none: force it to run the path
  Pair p(o);
  std::printf("GPUDirect mode: %s\n", to_string(p.info(0).gpudirect_mode()));
  if (p.info(0).gpudirect_mode() != GpuDirectMode::DmaBuf)
    GTEST_SKIP() << "this GPU or driver exports no dma-buf";
  EXPECT_TRUE(p.t[0]->supports(MemoryKind::Cuda));
  for (size_t n : kSizes) exchange_all(*cuda, p, n);
  EXPECT_GT(p.info(1).flushes_issued(), 0u) << "receives into GPU memory were flushed";
  // The same device buffer again: a cache hit on its registration.
  DeviceBuffer a(*cuda, 1 << 20), b(*cuda, 1 << 20);
  auto send_once = [&] {
    auto r = p.c[1]->irecv(b.get(), 1 << 20, nullptr, 5);
    auto s = p.c[0]->isend(a.get(), 1 << 20, nullptr, 5);
    ASSERT_TRUE(p.drive({r.get(), s.get()}, 30s));
  };
  send_once();
  auto before = p.info(0).mr_cache().stats();
  send_once();
  EXPECT_EQ(p.info(0).mr_cache().stats().misses, before.misses);
}

TEST(GpuDirect, WithoutItDeviceBuffersAreLeftToTheEngine) {
  REQUIRE_CUDA(cuda);
  Options o = ringlink::testing::soft_verbs_options();
  o.ib_gpudirect = false;  // RINGLINK_IB_GPUDIRECT=off
  Pair p(o);
  EXPECT_EQ(p.info(0).gpudirect_mode(), GpuDirectMode::Staging);
  EXPECT_FALSE(p.t[0]->supports(MemoryKind::Cuda)) << "the engine's staging layer carries device buffers";
  DeviceBuffer d(*cuda, 4096);
  EXPECT_THROW(p.t[0]->register_memory(d.get(), 4096, MemoryKind::Cuda), InvalidArgumentError);
  EXPECT_THROW(p.c[0]->isend(d.get(), 4096, nullptr, 1), InvalidArgumentError);
  EXPECT_THROW(p.c[1]->irecv(d.get(), 4096, nullptr, 1), InvalidArgumentError);
}

TEST(GpuDirect, RegisteringDeviceMemoryNeedsADriver) {
  const cuda::CudaDriver* cuda = cuda_or_skip();
  if (cuda) GTEST_SKIP() << "a CUDA driver is present";
  Pair p;
  EXPECT_EQ(p.info(0).gpudirect_mode(), GpuDirectMode::NoCuda);
  EXPECT_FALSE(p.t[0]->supports(MemoryKind::Cuda));
  char x[8];
  EXPECT_THROW(p.t[0]->register_memory(x, 8, MemoryKind::Cuda), InvalidArgumentError);
}

}  // namespace
