// ringlink-reduce-bench: the reduction kernel's speed next to a plain memcpy and a plain
// `a[i] += b[i]` loop, all measured in the same run on the same buffers; with --device cuda,
// the GPU kernel next to a device-to-device copy (gpu.cc).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/host_buffer.h"
#include "reduce/reduce.h"
#include "ringlink-reduce-bench/gpu.h"

namespace {

// Median of `reps` timings of `fn`, in seconds.
template <typename Fn>
double median_seconds(int reps, Fn fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The baseline a compiler makes of the simplest loop; kept out of line so it is not folded
// into the benchmark loop.
__attribute__((noinline)) void plain_add(float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] += b[i];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Reduction kernel throughput vs memcpy and a plain a += b loop (float32 sum); "
               "--device cuda: the GPU kernel vs a device-to-device copy."};
  std::vector<size_t> sizes{size_t{32} << 10, size_t{512} << 10, size_t{4} << 20, size_t{64} << 20};
  int reps = 21;
  std::string device = "host";
  std::vector<std::string> type_names{"float", "bfloat16"};
  std::string op_name = "sum";
  auto* sizes_opt = app.add_option("-s,--sizes", sizes, "buffer sizes in bytes (GPU default: 64 MiB, 256 MiB)");
  app.add_option("-r,--reps", reps, "repetitions (the median is reported)")->check(CLI::PositiveNumber);
  app.add_option("--device", device, "host or cuda")->check(CLI::IsMember({"host", "cuda"}));
  app.add_option("-t,--types", type_names, "with --device cuda: element types (float, bfloat16, half, ...)")
      ->delimiter(',');
  app.add_option("-o,--op", op_name, "with --device cuda: sum, prod, min, max");
  CLI11_PARSE(app, argc, argv);

  if (device == "cuda") {
    ringlink::tools::GpuBenchConfig config;
    config.sizes = sizes_opt->count() ? sizes : std::vector<size_t>{size_t{64} << 20, size_t{256} << 20};
    config.reps = reps;
    for (const auto& name : type_names) {
      auto t = ringlink::parse_data_type(name);
      if (!t) {
        std::fprintf(stderr, "unknown type %s\n", name.c_str());
        return 2;
      }
      config.types.push_back(*t);
    }
    auto op = ringlink::parse_reduce_op(op_name);
    if (!op || *op == ringlink::ReduceOp::Avg) {
      std::fprintf(stderr, "--op: one of sum, prod, min, max\n");
      return 2;
    }
    config.op = *op;
    if (std::find(config.sizes.begin(), config.sizes.end(), size_t{0}) != config.sizes.end()) {
      std::fprintf(stderr, "--sizes: sizes must be positive\n");
      return 2;
    }
    return ringlink::tools::run_gpu_bench(config);
  }

  std::printf("# kernels dispatched to: %s\n", ringlink::reduce::isa());
  std::printf("# GB/s counts the bytes written (the output), as nccl-tests does for algbw\n");
  std::printf("%12s %12s %12s %12s %10s\n", "bytes", "memcpy", "a+=b", "combine", "vs a+=b");
  for (size_t bytes : sizes) {
    size_t n = bytes / sizeof(float);
    ringlink::HostBuffer a(bytes), b(bytes), c(bytes);
    for (size_t i = 0; i < n; ++i) {
      a.as<float>()[i] = 1.0f;
      b.as<float>()[i] = 2.0f;
    }
    // Enough repetitions inside each timing to cover ~10 ms.
    int inner = static_cast<int>(std::max<size_t>(1, (size_t{64} << 20) / bytes));
    double t_copy = median_seconds(reps, [&] {
      for (int k = 0; k < inner; ++k) std::memcpy(c.data(), b.data(), bytes);
    });
    double t_add = median_seconds(reps, [&] {
      for (int k = 0; k < inner; ++k) plain_add(a.as<float>(), b.as<float>(), n);
    });
    double t_combine = median_seconds(reps, [&] {
      for (int k = 0; k < inner; ++k)
        ringlink::reduce::combine(a.data(), a.data(), b.data(), n, ringlink::DataType::Float32,
                                  ringlink::ReduceOp::Sum);
    });
    auto gbps = [&](double t) { return static_cast<double>(bytes) * inner / t / 1e9; };
    std::printf("%12zu %12.2f %12.2f %12.2f %9.0f%%\n", bytes, gbps(t_copy), gbps(t_add), gbps(t_combine),
                100.0 * t_add / t_combine);
  }
  return 0;
}
