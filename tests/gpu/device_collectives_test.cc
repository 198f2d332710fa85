// Collectives and point-to-point on device buffers through the staging layer, checked bitwise
// against the same calls on host buffers and across ranks. Run by ringlink-run like the other
// multi-rank tests, in one of two ways:
//  - RINGLINK_DEVICE_OPS=standin: "device" memory is host memory of the stand-in, whose worker
//    thread completes copies and reductions in a shuffled order. A pipeline that sends a chunk
//    before its copy completed, or reduces before a received copy landed, fails here. Runs in CI.
//  - otherwise on a CUDA GPU, adding the stream-order tests; exits 77 (SKIP) without one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "comm/device_ops.h"
#include "common/cuda_driver.h"
#include "multirank/collective_kind.h"
#include "multirank/world.h"
#include "reduce/cuda/reduce.h"

using namespace ringlink;
using namespace ringlink::testing;

namespace {

bool standin() {
  const char* e = std::getenv("RINGLINK_DEVICE_OPS");
  return e && std::string_view(e).starts_with("standin");
}

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes)
      : p_(standin() ? detail::standin_alloc(bytes) : cuda::device_alloc(bytes ? bytes : 1)), bytes_(bytes) {}
  ~DeviceBuffer() { standin() ? detail::standin_free(p_) : cuda::device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<std::byte>& v, size_t offset = 0) {
    if (v.empty()) return;
    if (standin())
      std::memcpy(at(offset), v.data(), v.size());
    else
      cuda::copy_to_device(at(offset), v.data(), v.size());
  }
  std::vector<std::byte> download(size_t bytes, size_t offset = 0) const {
    std::vector<std::byte> v(bytes);
    if (bytes == 0) return v;
    if (standin())
      std::memcpy(v.data(), at(offset), bytes);
    else
      cuda::copy_to_host(v.data(), at(offset), bytes);
    return v;
  }
  std::byte* at(size_t offset) const { return static_cast<std::byte*>(p_) + offset; }
  void* get() const { return p_; }

 private:
  void* p_;
  size_t bytes_;
};

// Small integers (1..3) in every type: sums and products stay exact for the ranks tested, so
// every schedule's result is bitwise the same.
std::vector<std::byte> values(DataType t, size_t count, int rank, int salt) {
  std::vector<std::byte> out(count * size_of(t));
  for (size_t i = 0; i < count; ++i) {
    const int v = static_cast<int>((i * 7 + static_cast<size_t>(rank) * 3 + static_cast<size_t>(salt)) % 3) + 1;
    std::byte* p = out.data() + i * size_of(t);
    auto put = [&](auto x) { std::memcpy(p, &x, sizeof x); };
    switch (t) {
      case DataType::Float32: put(static_cast<float>(v)); break;
      case DataType::Float64: put(static_cast<double>(v)); break;
      case DataType::Float16: put(static_cast<uint16_t>(v == 1 ? 0x3c00 : v == 2 ? 0x4000 : 0x4200)); break;
      case DataType::BFloat16: put(static_cast<uint16_t>(v == 1 ? 0x3f80 : v == 2 ? 0x4000 : 0x4040)); break;
      case DataType::Int8: put(static_cast<int8_t>(v)); break;
      case DataType::UInt8: put(static_cast<uint8_t>(v)); break;
      case DataType::Int32: put(static_cast<int32_t>(v)); break;
      case DataType::Int64: put(static_cast<int64_t>(v)); break;
    }
  }
  return out;
}

uint64_t fingerprint(const std::vector<std::byte>& v) {
  uint64_t h = 1469598103934665603ull;
  for (std::byte b : v) h = (h ^ static_cast<uint8_t>(b)) * 1099511628211ull;
  return h ^ v.size();
}

// Every rank holds the same bytes.
void expect_same_on_every_rank(const std::vector<std::byte>& v, const std::string& what) {
  auto& c = world();
  uint64_t mine = fingerprint(v);
  std::vector<uint64_t> all(static_cast<size_t>(c.size()));
  c.allgather(&mine, all.data(), 1, DataType::Int64);
  for (int r = 0; r < c.size(); ++r) EXPECT_EQ(all[static_cast<size_t>(r)], mine) << what << ": rank " << r << " differs";
}

std::vector<size_t> counts() {
  if (standin()) return {0, 1, 7, 1003, 20011};  // with 4 KiB chunks (the test's environment): many chunks
  return {0, 1, 7, (size_t{1} << 20) + 3};
}

// Runs `coll` on buffers at send/recv (host or device alike); `count` per rank block where the
// collective has blocks.
void run(Coll coll, const void* send, void* recv, size_t count, DataType t, ReduceOp op, int root) {
  auto& c = world();
  switch (coll) {
    case Coll::AllReduce: c.allreduce(send, recv, count, t, op); break;
    case Coll::ReduceScatter: c.reduce_scatter(send, recv, count, t, op); break;
    case Coll::AllGather: c.allgather(send, recv, count, t); break;
    case Coll::Broadcast: c.broadcast(send, recv, count, t, root); break;
    case Coll::Reduce: c.reduce(send, recv, count, t, op, root); break;
  }
}

// Element counts of the send and receive buffers.
std::pair<size_t, size_t> extents(Coll coll, size_t count, int n) {
  const auto N = static_cast<size_t>(n);
  switch (coll) {
    case Coll::ReduceScatter: return {count * N, count};
    case Coll::AllGather: return {count, count * N};
    default: return {count, count};
  }
}

std::string fmt_what(Coll coll, DataType t, ReduceOp op, size_t count, bool in_place) {
  return std::string(name(coll)) + " " + std::string(to_string(t)) + " " + std::string(to_string(op)) + " count " +
         std::to_string(count) + (in_place ? " in place" : " out of place");
}

// The device result of one call, in or out of place, against the host path's.
void check_one(Coll coll, DataType t, ReduceOp op, size_t count, bool in_place) {
  auto& c = world();
  const int n = c.size(), me = c.rank(), root = n - 1;
  const size_t es = size_of(t);
  auto [send_count, recv_count] = extents(coll, count, n);
  const std::string what = fmt_what(coll, t, op, count, in_place);
  std::vector<std::byte> input = values(t, send_count, me, static_cast<int>(coll));

  // Host path: the reference.
  std::vector<std::byte> host_recv(recv_count * es, std::byte{0x5a});
  std::vector<std::byte> host_send = input;
  run(coll, host_send.data(), host_recv.data(), count, t, op, root);

  // Device path.
  std::vector<std::byte> got;
  const std::vector<std::byte> poison(recv_count * es, std::byte{0x5a});
  if (!in_place) {
    DeviceBuffer dsend(send_count * es), drecv(recv_count * es);
    dsend.upload(input);
    drecv.upload(poison);
    run(coll, dsend.get(), drecv.get(), count, t, op, root);
    got = drecv.download(recv_count * es);
    // The input is left as it was.
    EXPECT_EQ(dsend.download(send_count * es), input) << what << ": the send buffer changed";
  } else {
    const size_t span = std::max(send_count, recv_count) * es;
    DeviceBuffer buf(span);
    size_t send_off = 0, recv_off = 0;
    if (coll == Coll::AllGather) send_off = static_cast<size_t>(me) * count * es;
    if (coll == Coll::ReduceScatter) recv_off = static_cast<size_t>(me) * count * es;
    buf.upload(std::vector<std::byte>(span, std::byte{0x5a}));
    buf.upload(input, send_off);
    run(coll, buf.at(send_off), buf.at(recv_off), count, t, op, root);
    got = buf.download(recv_count * es, recv_off);
  }
  // Reduce writes the root's buffer only.
  if (coll == Coll::Reduce && me != root) return;
  EXPECT_TRUE(got == host_recv) << what << ": the device result differs from the host path's";
  if (coll == Coll::AllReduce || coll == Coll::Broadcast || coll == Coll::AllGather)
    expect_same_on_every_rank(got, what);
}


TEST(Device, EveryCollectiveTypeOpAndCount) {
  for (Coll coll : {Coll::AllReduce, Coll::ReduceScatter, Coll::AllGather, Coll::Broadcast, Coll::Reduce}) {
    const bool reduces = coll != Coll::AllGather && coll != Coll::Broadcast;
    for (DataType t : kAllDataTypes) {
      for (ReduceOp op : kAllReduceOps) {
        if (!reduces && op != ReduceOp::Sum) continue;
        for (size_t count : counts())
          for (bool in_place : {false, true}) check_one(coll, t, op, count, in_place);
        if (::testing::Test::HasFailure()) return;  // one failing combination says enough
      }
    }
  }
}

TEST(Device, LargeAllreduce) {
  // 2^26 floats on a GPU; the stand-in takes 2^22 (its worker is one CPU thread).
  const size_t count = standin() ? (size_t{1} << 22) : (size_t{1} << 26);
  check_one(Coll::AllReduce, DataType::Float32, ReduceOp::Sum, count, false);
  check_one(Coll::AllReduce, DataType::BFloat16, ReduceOp::Avg, count, true);
}

TEST(Device, PointToPoint) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (size_t bytes : {size_t{1}, size_t{4099}, size_t{3} << 20}) {
    std::vector<std::byte> mine = values(DataType::UInt8, bytes, me, 9);
    DeviceBuffer out(bytes), in(bytes);
    out.upload(mine);
    const int next = (me + 1) % n, prev = (me + n - 1) % n;
    Work r = c.irecv(in.get(), bytes, prev, 5);
    c.send(out.get(), bytes, next, 5);
    r.wait();
    EXPECT_EQ(in.download(bytes), values(DataType::UInt8, bytes, prev, 9)) << bytes << " bytes from " << prev;
  }
}

TEST(Device, MixedHostAndDeviceBuffersAreRefused) {
  auto& c = world();
  DeviceBuffer d(64);
  std::vector<float> h(16);
  EXPECT_THROW(c.allreduce(d.get(), h.data(), 16, DataType::Float32, ReduceOp::Sum), InvalidArgumentError);
  EXPECT_THROW(c.iallreduce(h.data(), h.data(), 16, DataType::Float32, ReduceOp::Sum, CudaStream{}),
               InvalidArgumentError);
}

// ---- on a GPU only: stream order ----

class Stream {
 public:
  Stream() { check(drv().stream_create(&s_, cuda::kCuStreamNonBlocking)); }
  ~Stream() { drv().stream_destroy(s_); }
  void* get() const { return s_; }
  void sync() const { check(drv().stream_synchronize(s_)); }  // the test's own check, at the end
  static const cuda::CudaDriver& drv() { return *cuda::cuda_driver(); }
  static void check(cuda::CUresult r) { ASSERT_EQ(r, cuda::kCudaSuccess) << cuda::cuda_error_text(drv(), r); }

 private:
  cuda::CUstream s_ = nullptr;
};

TEST(DeviceStream, KernelsBeforeAndAfterWithoutHostSynchronization) {
  if (standin()) GTEST_SKIP() << "stream order needs a GPU";
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (size_t count : {size_t{7}, (size_t{1} << 20) + 3, size_t{1} << 24}) {
    const size_t bytes = count * 4;
    DeviceBuffer a(bytes), b(bytes), in(bytes), out(bytes), after(bytes), zero(bytes);
    a.upload(values(DataType::Float32, count, me, 1));
    b.upload(values(DataType::Float32, count, me, 2));
    zero.upload(std::vector<std::byte>(bytes));
    Stream s;
    for (int round = 0; round < 3; ++round) {
      // A kernel writes the input right before the call, another reads the result right after.
      reduce::cuda::combine(in.get(), a.get(), b.get(), count, DataType::Float32, ReduceOp::Sum, s.get());
      Work w = c.iallreduce(in.get(), out.get(), count, DataType::Float32, ReduceOp::Sum, CudaStream{s.get()});
      reduce::cuda::combine(after.get(), out.get(), zero.get(), count, DataType::Float32, ReduceOp::Sum, s.get());
      // The next round's kernel overwrites `in` while nothing waited on the host.
      if (round == 2) {
        s.sync();
        w.wait();
      }
    }
    // Expected: the sum over ranks of a + b, computed on the host.
    std::vector<float> expect(count, 0.0f);
    for (int r = 0; r < n; ++r) {
      auto va = values(DataType::Float32, count, r, 1), vb = values(DataType::Float32, count, r, 2);
      for (size_t i = 0; i < count; ++i) {
        float x, y;
        std::memcpy(&x, va.data() + i * 4, 4);
        std::memcpy(&y, vb.data() + i * 4, 4);
        expect[i] += x + y;
      }
    }
    auto got = after.download(bytes);
    EXPECT_EQ(std::memcmp(got.data(), expect.data(), bytes), 0) << "count " << count;
  }
}

TEST(DeviceStream, PointToPointOnAStream) {
  if (standin()) GTEST_SKIP() << "stream order needs a GPU";
  auto& c = world();
  const int n = c.size(), me = c.rank();
  const size_t bytes = size_t{4} << 20;
  DeviceBuffer out(bytes), in(bytes), copy(bytes), src(bytes), zero(bytes);
  src.upload(values(DataType::UInt8, bytes, me, 3));
  zero.upload(std::vector<std::byte>(bytes));
  Stream s;
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  reduce::cuda::combine(out.get(), src.get(), zero.get(), bytes, DataType::UInt8, ReduceOp::Sum, s.get());
  Work r = c.irecv(in.get(), bytes, prev, 11, CudaStream{s.get()});
  Work w = c.isend(out.get(), bytes, next, 11, CudaStream{s.get()});
  reduce::cuda::combine(copy.get(), in.get(), zero.get(), bytes, DataType::UInt8, ReduceOp::Sum, s.get());
  s.sync();
  r.wait();
  w.wait();
  EXPECT_EQ(copy.download(bytes), values(DataType::UInt8, bytes, prev, 3));
}

}  // namespace
