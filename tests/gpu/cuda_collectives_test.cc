// Collectives on CUDA device buffers (staged through host memory). Skips, saying why, where no
// GPU is present; run by ringlink-run like the other multi-rank tests.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "common/cuda_driver.h"
#include "multirank/world.h"

using namespace ringlink;
using namespace ringlink::testing;

namespace {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : p_(cuda::device_alloc(bytes)), bytes_(bytes) {}
  ~DeviceBuffer() { cuda::device_free(p_); }
  template <typename T>
  void upload(const std::vector<T>& v) {
    cuda::copy_to_device(p_, v.data(), v.size() * sizeof(T));
  }
  template <typename T>
  std::vector<T> download(size_t count) const {
    std::vector<T> v(count);
    cuda::copy_to_host(v.data(), p_, count * sizeof(T));
    return v;
  }
  void* get() const { return p_; }
  template <typename T>
  T* at(size_t i) const {
    return static_cast<T*>(p_) + i;
  }

 private:
  void* p_;
  size_t bytes_;
};

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::available()) GTEST_SKIP() << "no GPU here: " << cuda::unavailable_reason();
  }
};

TEST_F(Cuda, DevicePointersAreRecognised) {
  DeviceBuffer d(64);
  std::vector<float> host(16);
  EXPECT_TRUE(cuda::is_device_pointer(d.get()));
  EXPECT_FALSE(cuda::is_device_pointer(host.data()));
}

TEST_F(Cuda, AllreduceOutOfPlaceAndInPlace) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (size_t count : {size_t{1}, size_t{1000}, (size_t{1} << 22) + 5}) {
    std::vector<float> in(count);
    for (size_t i = 0; i < count; ++i) in[i] = static_cast<float>(me + 1) * static_cast<float>(i % 97);
    DeviceBuffer a(count * 4), b(count * 4);
    a.upload(in);
    c.allreduce(a.get(), b.get(), count, DataType::Float32, ReduceOp::Sum);
    auto out = b.download<float>(count);
    float scale = static_cast<float>(n * (n + 1) / 2);
    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) wrong += out[i] != scale * static_cast<float>(i % 97);
    EXPECT_EQ(wrong, 0u) << "out of place, count " << count;

    c.allreduce(a.get(), count, DataType::Float32, ReduceOp::Max);
    out = a.download<float>(count);
    wrong = 0;
    for (size_t i = 0; i < count; ++i) wrong += out[i] != static_cast<float>(n) * static_cast<float>(i % 97);
    EXPECT_EQ(wrong, 0u) << "in place, count " << count;
  }
}

TEST_F(Cuda, AllgatherBroadcastReduceScatterReduce) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  const size_t count = 100003;
  std::vector<int32_t> mine(count, me + 1);
  DeviceBuffer send(count * 4 * n), recv(count * 4 * n);
  send.upload(mine);
  c.allgather(send.get(), recv.get(), count, DataType::Int32);
  auto all = recv.download<int32_t>(count * n);
  for (int r = 0; r < n; ++r) EXPECT_EQ(all[r * count + count - 1], r + 1);

  // In-place allgather: own block already in place.
  DeviceBuffer inplace(count * 4 * n);
  cuda::copy_to_device(inplace.at<int32_t>(me * count), mine.data(), count * 4);
  c.allgather(inplace.at<int32_t>(me * count), inplace.get(), count, DataType::Int32);
  all = inplace.download<int32_t>(count * n);
  for (int r = 0; r < n; ++r) EXPECT_EQ(all[r * count], r + 1);

  c.broadcast(send.get(), count, DataType::Int32, n - 1);
  EXPECT_EQ(send.download<int32_t>(count)[7], n);

  std::vector<int32_t> blocks(count * n, 1);
  send.upload(blocks);
  c.reduce_scatter(send.get(), recv.get(), count, DataType::Int32, ReduceOp::Sum);
  EXPECT_EQ(recv.download<int32_t>(count)[count - 1], n);

  send.upload(mine);
  c.reduce(send.get(), me == 0 ? recv.get() : nullptr, count, DataType::Int32, ReduceOp::Sum, 0);
  if (me == 0) {
    EXPECT_EQ(recv.download<int32_t>(count)[3], n * (n + 1) / 2);
  }
}

TEST_F(Cuda, PointToPointBetweenDeviceBuffers) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  const size_t count = 1 << 20;
  std::vector<int32_t> mine(count);
  std::iota(mine.begin(), mine.end(), me * 7);
  DeviceBuffer out(count * 4), in(count * 4);
  out.upload(mine);
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  Work r = c.irecv(in.get(), count * 4, prev, 5);
  c.send(out.get(), count * 4, next, 5);
  r.wait();
  auto got = in.download<int32_t>(count);
  EXPECT_EQ(got[0], prev * 7);
  EXPECT_EQ(got[count - 1], prev * 7 + static_cast<int32_t>(count) - 1);
}

}  // namespace
