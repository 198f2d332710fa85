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

using namespace ringlink;
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

bool is_nan_bits(DataType t, const std::byte* p) {
  uint64_t u = 0;
  std::memcpy(&u, p, size_of(t));
  switch (t) {
    case DataType::Float32: return (u & 0x7FFFFFFFu) > 0x7F800000u;
    case DataType::Float64: return (u & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull;
    case DataType::Float16: return (u & 0x7FFFu) > 0x7C00u;
    case DataType::BFloat16: return (u & 0x7FFFu) > 0x7F80u;
    default: return false;
  }
}

// Values that find the corners: signed zeros, infinities, NaNs quiet and signalling with
// payloads, the smallest and largest subnormals and normals, the largest finite value.
std::vector<uint64_t> special_values(DataType t) {
  switch (t) {
    case DataType::Float32:
      return {0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0xFF812345,
              0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0x33800000};
    case DataType::Float64:
      return {0x0ull, 0x8000000000000000ull, 0x7FF0000000000000ull, 0xFFF0000000000000ull, 0x7FF8000000000000ull,
              0x7FF0000000000001ull, 0xFFF4000000000abcull, 0x0000000000000001ull, 0x800FFFFFFFFFFFFFull,
              0x0010000000000000ull, 0x7FEFFFFFFFFFFFFFull, 0xFFEFFFFFFFFFFFFFull, 0x3FF0000000000000ull};
    case DataType::Float16:
      return {0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0xFD55, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
              0x3C00, 0x3C01};
    case DataType::BFloat16:
      return {0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x7F81, 0xFFA5, 0x0001, 0x807F, 0x0080, 0x7F7F, 0xFF7F,
              0x3F80, 0x3F81};
    default: return {};
  }
}

// Elements of `t`: for floats an eighth special values, three eighths arbitrary bit patterns
// and half ordinary values in [-4, 4) (where sums round); for integers arbitrary bits (so sums
// and products overflow).
std::vector<std::byte> random_elements(DataType t, size_t n, std::mt19937_64& rng) {
  const size_t w = size_of(t);
  std::vector<std::byte> out(n * w);
  const auto specials = special_values(t);
  std::uniform_real_distribution<double> ordinary(-4.0, 4.0);
  for (size_t i = 0; i < n; ++i) {
    uint64_t bits = rng();
    if (!specials.empty()) {
      const unsigned pick = static_cast<unsigned>(rng() % 8);
      if (pick == 0) {
        bits = specials[rng() % specials.size()];
      } else if (pick >= 4) {
        const double v = ordinary(rng);
        if (t == DataType::Float32) {
          float f = static_cast<float>(v);
          std::memcpy(&bits, &f, 4);
        } else if (t == DataType::Float64) {
          std::memcpy(&bits, &v, 8);
        } else if (t == DataType::Float16) {
          bits = reduce::float_to_half(static_cast<float>(v));
        } else {
          bits = reduce::float_to_bfloat16(static_cast<float>(v));
        }
      }
    }
    std::memcpy(out.data() + i * w, &bits, w);  // little endian: the low bytes
  }
  return out;
}

// Where the operands and the result sit, in elements from the start of their buffers.
struct Layout {
  const char* name;
  size_t a_offset, b_offset, dst_offset;
  int dst_is;  // 0: its own buffer, 1: a, 2: b
};
constexpr Layout kLayouts[] = {
    {"aligned", 0, 0, 0, 0},
    {"in place into a", 0, 0, 0, 1},
    {"in place into b", 0, 0, 0, 2},
    {"same misalignment", 1, 1, 1, 0},
    {"different misalignments", 1, 3, 2, 0},
    {"in place, a misaligned against b", 1, 0, 1, 1},
};

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
void run_case(DataType t, ReduceOp op, size_t n, const Layout& layout, std::mt19937_64& rng) {
  const size_t w = size_of(t);
  const size_t bytes = n * w + kSlack;
  DeviceBytes da(bytes), db(bytes), dd(bytes);
  const auto a = random_elements(t, n, rng), b = random_elements(t, n, rng);
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
    EXPECT_EQ(da.download(), ha) << what << ": input a changed";
  }
  if (layout.dst_is != 2) {
    EXPECT_EQ(db.download(), hb) << what << ": input b changed";
  }
}

TEST_F(GpuReduce, EveryTypeAndOpMatchesTheHostBitwise) {
  std::mt19937_64 rng(12345);
  for (DataType t : kAllDataTypes)
    for (ReduceOp op : kAllReduceOps)
      for (size_t n : {size_t{0}, size_t{1}, size_t{7}, kLargeCount})
        for (const Layout& layout : kLayouts) run_case(t, op, n, layout, rng);
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
