// The GPU reduction kernels against the host kernels, bit for bit: every type x op, random data
// with NaNs (quiet and signalling, with payloads), infinities, subnormals, signed zeros and
// integer overflow, counts 0, 1, 7 and 2^20 + 3, aligned, co-misaligned and mutually misaligned
// buffers, in place into either input. Needs a GPU: without one the program exits 77 (SKIP).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/cuda_driver.h"
#include "reduce/cuda/reduce.h"
#include "reduce/reduce.h"
#include "ringlink/error.h"
#include "test_values.h"

using namespace ringlink;
using namespace ringlink::testing;
namespace gpu = ringlink::reduce::cuda;

namespace {

const cuda::CudaDriver& driver() { return *cuda::cuda_driver(); }

void check_cu(cuda::CUresult r, const char* what) {
  ASSERT_EQ(r, cuda::kCudaSuccess) << what << ": " << cuda::cuda_error_text(driver(), r);
}

// Device memory with a host mirror of its bytes.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) : p_(static_cast<std::byte*>(cuda::device_alloc(bytes))), bytes_(bytes) {}
  ~DeviceBytes() { cuda::device_free(p_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  std::byte* get() const { return p_; }
  size_t size() const { return bytes_; }
  void upload(const std::vector<std::byte>& v) const { cuda::copy_to_device(p_, v.data(), v.size()); }
  std::vector<std::byte> download() const {
    std::vector<std::byte> v(bytes_);
    cuda::copy_to_host(v.data(), p_, bytes_);
    return v;
  }

 private:
  std::byte* p_;
  size_t bytes_;
};

constexpr std::byte kGuard{0xA5};
constexpr size_t kLargeCount = (size_t{1} << 20) + 3;
constexpr size_t kSlack = 64;  // bytes around the data for offsets and guard checks

std::string hex(const std::byte* p, size_t w) {
  uint64_t u = 0;
  std::memcpy(&u, p, w);
  char s[24];
  std::snprintf(s, sizeof s, "0x%0*llx", static_cast<int>(2 * w), static_cast<unsigned long long>(u));
  return s;
}

// Compares the GPU's output bytes with the host's. Where both inputs of an arithmetic
// operation are NaN, which payload wins is up to the host compiler's operand order: both must
// be NaN there, bitwise equality everywhere else.
void expect_same(DataType t, ReduceOp op, const std::vector<std::byte>& want, const std::byte* got,
                 const std::vector<std::byte>& a, const std::vector<std::byte>& b, size_t n, const std::string& what) {
  const size_t w = size_of(t);
  const bool arithmetic = op == ReduceOp::Sum || op == ReduceOp::Prod || op == ReduceOp::Avg;
  size_t wrong = 0, first = n;
  for (size_t i = 0; i < n; ++i) {
    const std::byte* g = got + i * w;
    const std::byte* h = want.data() + i * w;
    bool same = std::memcmp(g, h, w) == 0;
    if (!same && arithmetic && is_nan_bits(t, a.data() + i * w) && is_nan_bits(t, b.data() + i * w))
      same = is_nan_bits(t, g) && is_nan_bits(t, h);
    if (!same && wrong++ == 0) first = i;
  }
  EXPECT_EQ(wrong, 0u) << what << ": first at " << first << (first < n ? ": a " + hex(a.data() + first * w, w) +
                                                                           " b " + hex(b.data() + first * w, w) +
                                                                           " host " + hex(want.data() + first * w, w) +
                                                                           " gpu " + hex(got + first * w, w)
                                                                     : std::string());
}

void expect_guards(const std::vector<std::byte>& bytes, size_t from, size_t to, const std::string& what) {
  size_t touched = 0;
  for (size_t i = 0; i < bytes.size(); ++i)
    if ((i < from || i >= to) && bytes[i] != kGuard) ++touched;
  EXPECT_EQ(touched, 0u) << what << ": bytes outside the output were written";
}

class GpuReduce : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    ASSERT_TRUE(gpu::available(&why)) << "a GPU is present but the kernels do not run: " << why;
  }
};

TEST_F(GpuReduce, KernelsLoad) { EXPECT_NE(std::string(gpu::architectures()), ""); }

// One case: inputs in their buffers at the layout's offsets, guards elsewhere; the GPU result
// against reduce::combine (and reduce::divide for Avg) on the same inputs.
void run_case(DataType t, ReduceOp op, size_t n, const Layout& layout, const std::vector<std::byte>& a,
              const std::vector<std::byte>& b) {
  const size_t w = size_of(t);
  const size_t bytes = n * w + kSlack;
  DeviceBytes da(bytes), db(bytes), dd(bytes);
  std::vector<std::byte> ha(bytes, kGuard), hb(bytes, kGuard), hd(bytes, kGuard);
  std::copy(a.begin(), a.end(), ha.begin() + static_cast<std::ptrdiff_t>(layout.a_offset * w));
  std::copy(b.begin(), b.end(), hb.begin() + static_cast<std::ptrdiff_t>(layout.b_offset * w));
  da.upload(ha);
  db.upload(hb);
  dd.upload(hd);

  std::vector<std::byte> want(n * w);
  reduce::combine(want.data(), a.data(), b.data(), n, t, op);
  constexpr int kRanks = 3;  // Avg over three ranks
  if (op == ReduceOp::Avg) reduce::divide(want.data(), n, t, kRanks);

  const DeviceBytes& out_buffer = layout.dst_is == 1 ? da : layout.dst_is == 2 ? db : dd;
  const size_t out_offset = layout.dst_is == 1 ? layout.a_offset : layout.dst_is == 2 ? layout.b_offset : layout.dst_offset;
  std::byte* dst = out_buffer.get() + out_offset * w;
  gpu::combine(dst, da.get() + layout.a_offset * w, db.get() + layout.b_offset * w, n, t, op, nullptr);
  if (op == ReduceOp::Avg) gpu::divide(dst, n, t, kRanks, nullptr);
  check_cu(driver().ctx_synchronize(), "cuCtxSynchronize");

  const std::string what = std::string(to_string(t)) + " " + std::string(to_string(op)) + " n=" + std::to_string(n) +
                           " " + layout.name;
  const auto got = out_buffer.download();
  expect_same(t, op, want, got.data() + out_offset * w, a, b, n, what);
  expect_guards(got, out_offset * w, out_offset * w + n * w, what);
  if (layout.dst_is != 1) {
    EXPECT_TRUE(da.download() == ha) << what << ": input a changed";
  }
  if (layout.dst_is != 2) {
    EXPECT_TRUE(db.download() == hb) << what << ": input b changed";
  }
}

TEST_F(GpuReduce, EveryTypeAndOpMatchesTheHostBitwise) {
  std::mt19937_64 rng(12345);
  for (DataType t : kAllDataTypes)
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, kLargeCount}) {
      const auto a = random_elements(t, n, rng), b = random_elements(t, n, rng);
      for (ReduceOp op : kAllReduceOps)
        for (const Layout& layout : kLayouts) run_case(t, op, n, layout, a, b);
    }
}

TEST_F(GpuReduce, DivideMatchesTheHostBitwise) {
  std::mt19937_64 rng(777);
  for (DataType t : kAllDataTypes) {
    for (int divisor : {1, 2, 3, 7, 300, 65539}) {
      for (size_t offset : {size_t{0}, size_t{1}}) {
        const size_t w = size_of(t), n = kLargeCount;
        const auto data = random_elements(t, n, rng);
        std::vector<std::byte> image(n * w + kSlack, kGuard);
        std::copy(data.begin(), data.end(), image.begin() + static_cast<std::ptrdiff_t>(offset * w));
        DeviceBytes d(image.size());
        d.upload(image);
        std::vector<std::byte> want = data;
        reduce::divide(want.data(), n, t, divisor);
        gpu::divide(d.get() + offset * w, n, t, divisor, nullptr);
        check_cu(driver().ctx_synchronize(), "cuCtxSynchronize");
        const auto got = d.download();
        const std::string what =
            std::string(to_string(t)) + " / " + std::to_string(divisor) + " offset " + std::to_string(offset);
        // Division has one operand: every result, NaNs included, must be the host's bits.
        expect_same(t, ReduceOp::Min, want, got.data() + offset * w, data, data, n, what);
        expect_guards(got, offset * w, offset * w + n * w, what);
      }
    }
  }
}

// Work queued before the call is seen by the kernel, work queued after it sees the result,
// with no host synchronisation in between: copy x into a, reduce, copy the result out, all on
// one non-blocking stream (which does not order itself after the legacy default stream).
TEST_F(GpuReduce, OrderedOnTheCallersStream) {
  const auto& d = driver();
  cuda::CUstream stream = nullptr;
  check_cu(d.stream_create(&stream, cuda::kCuStreamNonBlocking), "cuStreamCreate");
  const size_t n = size_t{1} << 24;  // 64 MiB of float: long enough to race if unordered
  DeviceBytes x(n * 4), a(n * 4), b(n * 4), out(n * 4);
  std::vector<float> hx(n), hb(n);
  for (size_t i = 0; i < n; ++i) {
    hx[i] = static_cast<float>(i % 1000);
    hb[i] = 0.5f;
  }
  cuda::copy_to_device(x.get(), hx.data(), n * 4);
  cuda::copy_to_device(b.get(), hb.data(), n * 4);
  check_cu(d.memset_d8(reinterpret_cast<cuda::CUdeviceptr>(a.get()), 0, n * 4), "cuMemsetD8");
  check_cu(d.ctx_synchronize(), "cuCtxSynchronize");
  for (int round = 0; round < 3; ++round) {
    check_cu(d.memcpy_dtod_async(reinterpret_cast<cuda::CUdeviceptr>(a.get()),
                                 reinterpret_cast<cuda::CUdeviceptr>(x.get()), n * 4, stream),
             "cuMemcpyDtoDAsync");
    gpu::combine(a.get(), a.get(), b.get(), n, DataType::Float32, ReduceOp::Sum, stream);
    check_cu(d.memcpy_dtod_async(reinterpret_cast<cuda::CUdeviceptr>(out.get()),
                                 reinterpret_cast<cuda::CUdeviceptr>(a.get()), n * 4, stream),
             "cuMemcpyDtoDAsync");
  }
  check_cu(d.stream_synchronize(stream), "cuStreamSynchronize");
  std::vector<float> got(n);
  cuda::copy_to_host(got.data(), out.get(), n * 4);
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i) wrong += got[i] != hx[i] + 0.5f;
  EXPECT_EQ(wrong, 0u);
  check_cu(d.stream_destroy(stream), "cuStreamDestroy");
}

TEST_F(GpuReduce, RejectsMemoryItCannotUse) {
  constexpr size_t kBytes = size_t{2} << 20;  // a whole 2 MiB page: no neighbour shares it
  DeviceBytes d(kBytes);
  std::vector<float> host(256);
  auto expect_invalid = [](auto&& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << ": no error";
    } catch (const InvalidArgumentError& e) {
      EXPECT_EQ(e.operation(), "reduce::cuda::combine") << what;
    }
  };
  float* dev = reinterpret_cast<float*>(d.get());
  expect_invalid([&] { gpu::combine(host.data(), dev, dev, 16, DataType::Float32, ReduceOp::Sum, nullptr); },
                 "host dst");
  expect_invalid([&] { gpu::combine(dev, host.data(), dev, 16, DataType::Float32, ReduceOp::Sum, nullptr); },
                 "host input");
  expect_invalid([&] { gpu::combine(dev, dev, dev + kBytes / 4 - 8, 4096, DataType::Float32, ReduceOp::Sum, nullptr); },
                 "b runs past its allocation");
  // Nothing was launched on bad input: the context is healthy.
  check_cu(driver().ctx_synchronize(), "cuCtxSynchronize");
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!gpu::built()) {
    std::printf("SKIP: this libringlink has no GPU kernels (built with -Dcuda=disabled or without nvcc)\n");
    return 77;
  }
  if (!cuda::available()) {
    std::printf("SKIP: no GPU here: %s\n", cuda::unavailable_reason().c_str());
    return 77;
  }
  return RUN_ALL_TESTS();
}
