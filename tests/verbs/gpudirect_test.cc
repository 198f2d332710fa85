// GPUDirect paths of the verbs transport with CUDA device buffers, over the software verbs
// (which reach device memory registered through dma-buf with driver copies). Skips where no GPU
// and CUDA driver are present; no HCA is involved.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ringlink/error.h"
#include "transport.h"
#include "common/cuda_driver.h"
#include "transport/verbs/verbs_transport.h"

using namespace std::chrono_literals;
using namespace ringlink;
using namespace ringlink::verbs;
using Clock = std::chrono::steady_clock;

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

struct Pair {
  Pair() {
    for (int r = 0; r < 2; ++r) {
      opt[r].transport = TransportKind::Verbs;
      opt[r].ib_hca = "soft";
      TransportSetup s{r, 2, r, 2, opt[r]};
      t[r] = create_verbs_transport(s);
    }
    auto e0 = t[0]->endpoint_info(1);
    auto e1 = t[1]->endpoint_info(0);
    c[0] = t[0]->connect(1, e1);
    c[1] = t[1]->connect(0, e0);
  }
  VerbsTransportInfo& info(int r) { return dynamic_cast<VerbsTransportInfo&>(*t[r]); }
  bool drive(std::vector<Request*> reqs) {
    auto deadline = Clock::now() + 30s;
    for (;;) {
      t[0]->progress();
      t[1]->progress();
      bool all = true;
      for (auto* r : reqs) all = r->test() && all;
      if (all) return true;
      if (Clock::now() > deadline) return false;
    }
  }
  Options opt[2];
  std::unique_ptr<Transport> t[2];
  std::unique_ptr<Connection> c[2];
};

std::vector<uint8_t> pattern(size_t n, int salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + salt);
  return v;
}

// Device -> device, host -> device and device -> host, each size, bitwise.
void exchange_all(const cuda::CudaDriver& cuda, Pair& p, size_t n) {
  auto src = pattern(n, static_cast<int>(n % 251));
  DeviceBuffer a(cuda, n), b(cuda, n);
  ASSERT_EQ(cuda.memcpy_htod(a.ptr, src.data(), n), cuda::kCudaSuccess);
  ASSERT_EQ(cuda.memset_d8(b.ptr, 0, n ? n : 1), cuda::kCudaSuccess);
  {
    auto r = p.c[1]->irecv(b.get(), n, nullptr, 1);
    auto s = p.c[0]->isend(a.get(), n, nullptr, 1);
    ASSERT_TRUE(p.drive({r.get(), s.get()})) << n << " bytes, device to device";
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
    ASSERT_TRUE(p.drive({r1.get(), s1.get()}));
  }
  {
    auto r2 = p.c[1]->irecv(b.get(), n, nullptr, 3);  // b is free again: host -> device
    auto s2 = p.c[0]->isend(host_src.data(), n, nullptr, 3);
    ASSERT_TRUE(p.drive({r2.get(), s2.get()}));
  }
  EXPECT_EQ(host_in, src) << n << " bytes, device to host";
  ASSERT_EQ(cuda.memcpy_dtoh(back.data(), b.ptr, n), cuda::kCudaSuccess);
  EXPECT_EQ(back, host_src) << n << " bytes, host to device";
}

const size_t kSizes[] = {0, 1, 100, 4096, (1u << 20) + 3, 16u << 20};

TEST(GpuDirect, DmaBufRegistrationCarriesDeviceBuffers) {
  REQUIRE_CUDA(cuda);
  ::unsetenv("RINGLINK_IB_GPUDIRECT");
  ::setenv("RINGLINK_IB_GDR_FLUSH", "1", 1);  // Hopper needs none: force it to run the path
  Pair p;
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
    ASSERT_TRUE(p.drive({r.get(), s.get()}));
  };
  send_once();
  auto before = p.info(0).mr_cache().stats();
  send_once();
  EXPECT_EQ(p.info(0).mr_cache().stats().misses, before.misses);
  ::unsetenv("RINGLINK_IB_GDR_FLUSH");
}

TEST(GpuDirect, StagingCarriesDeviceBuffersWithoutIt) {
  REQUIRE_CUDA(cuda);
  ::setenv("RINGLINK_IB_GPUDIRECT", "off", 1);
  Pair p;
  ::unsetenv("RINGLINK_IB_GPUDIRECT");
  EXPECT_EQ(p.info(0).gpudirect_mode(), GpuDirectMode::Staging);
  EXPECT_FALSE(p.t[0]->supports(MemoryKind::Cuda)) << "the engine stages; the transport copes anyway";
  for (size_t n : kSizes) exchange_all(*cuda, p, n);
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
