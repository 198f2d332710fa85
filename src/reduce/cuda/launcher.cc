// Host side of the GPU reductions: loads the embedded fatbin once per process with the driver's
// context-independent library API (cuLibraryLoadData: one load serves every context, and a
// launch runs in the stream's context), checks each call's buffers with the driver, and queues
// the kernel. Everything goes through the dlopen'd driver table, so libringlink has no
// load-time dependency on libcuda or libcudart.
#include "reduce/cuda/reduce.h"

#include <array>
#include <atomic>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "reduce/cuda/image.h"
#include "reduce/cuda/launch_plan.h"
#include "ringlink/error.h"

namespace ringlink::reduce::cuda {
namespace {

namespace drv = ringlink::cuda;

constexpr const char* kCombine = "reduce::cuda::combine";
constexpr const char* kDivide = "reduce::cuda::divide";
constexpr size_t kTypes = std::size(kAllDataTypes);
constexpr size_t kOps = 4;  // sum, prod, min, max: Avg runs sum

const char* type_tag(DataType t) {
  switch (t) {
    case DataType::Float32: return "f32";
    case DataType::Float64: return "f64";
    case DataType::Float16: return "f16";
    case DataType::BFloat16: return "bf16";
    case DataType::Int8: return "i8";
    case DataType::UInt8: return "u8";
    case DataType::Int32: return "i32";
    case DataType::Int64: return "i64";
  }
  return "?";
}

size_t op_index(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return 0;
    case ReduceOp::Prod: return 1;
    case ReduceOp::Min: return 2;
    case ReduceOp::Max: return 3;
  }
  return 0;
}
constexpr const char* kOpTags[kOps] = {"sum", "prod", "min", "max"};

std::string combine_name(size_t type, size_t op) {
  return fmt::format("ringlink_combine_{}_{}", type_tag(kAllDataTypes[type]), kOpTags[op]);
}
std::string divide_name(size_t type) { return fmt::format("ringlink_divide_{}", type_tag(kAllDataTypes[type])); }

// The bits of the NaN this CPU makes from non-NaN operands, read from a subtraction made at run
// time (volatile: not folded by the compiler).
HostNaN measure_host_nan() {
  volatile float fi = std::numeric_limits<float>::infinity();
  volatile double di = std::numeric_limits<double>::infinity();
  const float f = fi - fi;
  const double d = di - di;
  HostNaN nan{};
  std::memcpy(&nan.f32, &f, sizeof f);
  std::memcpy(&nan.f64, &d, sizeof d);
  return nan;
}

struct Kernels {
  const drv::CudaDriver* driver = nullptr;
  drv::CUkernel combine[kTypes][kOps] = {};
  drv::CUkernel divide[kTypes] = {};
  HostNaN nan{};
  std::string error;  // why the kernels cannot run; empty when they can
};

// The library stays loaded for the life of the process: unloading it from a static destructor
// could run after the driver has shut down.
Kernels load_kernels() {
  Kernels k;
  const auto image = embedded_image();
  if (image.empty()) {
    k.error = "this libringlink was built without the CUDA kernels (-Dcuda=disabled or no nvcc)";
    return k;
  }
  std::string why;
  k.driver = drv::cuda_driver(&why);
  if (!k.driver) {
    k.error = fmt::format("no usable CUDA driver or device: {}", why);
    return k;
  }
  const drv::CudaDriver& d = *k.driver;
  if (!d.library_load_data || !d.library_get_kernel) {
    k.error = "the CUDA driver is older than 12.0 (no cuLibraryLoadData)";
    return k;
  }
  drv::CUlibrary library = nullptr;
  if (drv::CUresult r = d.library_load_data(&library, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
      r != drv::kCudaSuccess) {
    k.error = fmt::format("loading the reduction kernels (built for {}): {}", embedded_architectures(),
                          drv::cuda_error_text(d, r));
    return k;
  }
  auto get = [&](drv::CUkernel& slot, const std::string& name) {
    if (!k.error.empty()) return;
    if (drv::CUresult r = d.library_get_kernel(&slot, library, name.c_str()); r != drv::kCudaSuccess)
      k.error = fmt::format("the embedded GPU code lacks {}: {}", name, drv::cuda_error_text(d, r));
  };
  for (size_t t = 0; t < kTypes; ++t) {
    for (size_t o = 0; o < kOps; ++o) get(k.combine[t][o], combine_name(t, o));
    get(k.divide[t], divide_name(t));
  }
  k.nan = measure_host_nan();
  return k;
}

const Kernels& kernels() {
  static const Kernels k = load_kernels();
  return k;
}

[[noreturn]] void invalid(int rank, const char* op, std::string detail) {
  throw InvalidArgumentError(rank, -1, op, std::move(detail));
}

bool known(DataType t) { return static_cast<size_t>(t) < kTypes; }
bool known(ReduceOp op) { return static_cast<unsigned>(op) <= static_cast<unsigned>(ReduceOp::Avg); }

uintptr_t address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// Checks that need no GPU: sizes, null and misaligned pointers, dst overlapping an input in part.
void check_buffer(int rank, const char* op, const char* what, const void* p, size_t count, DataType type) {
  if (!p) invalid(rank, op, fmt::format("{} is null ({} elements)", what, count));
  if (address(p) % size_of(type))
    invalid(rank, op, fmt::format("{} ({}) is not aligned to its {}-byte {} elements", what, p, size_of(type),
                                  to_string(type)));
  if (count > std::numeric_limits<size_t>::max() / size_of(type) ||
      address(p) > std::numeric_limits<uintptr_t>::max() - count * size_of(type))
    invalid(rank, op, fmt::format("{} elements of {} at {} overflow the address space", count, to_string(type), p));
}

void check_aliasing(int rank, const void* dst, const void* src, size_t bytes, const char* src_name) {
  if (dst == src) return;
  const uintptr_t d = address(dst), s = address(src);
  if (d < s + bytes && s < d + bytes)
    invalid(rank, kCombine, fmt::format("dst ({}) overlaps {} ({}) without being it ({} bytes each)", dst, src_name,
                                        src, bytes));
}

const Kernels& usable_kernels(int rank, const char* op) {
  const Kernels& k = kernels();
  if (!k.error.empty()) invalid(rank, op, fmt::format("GPU reductions are unavailable: {}", k.error));
  return k;
}

// What the driver knows of one buffer.
struct Placement {
  int ordinal = -1;
  drv::CUcontext context = nullptr;
};

Placement check_device_memory(const drv::CudaDriver& d, int rank, const char* op, const char* what, const void* p,
                              size_t bytes) {
  unsigned memory_type = 0, managed = 0;
  int ordinal = -1;
  drv::CUdeviceptr start = 0;
  size_t size = 0;
  drv::CUcontext context = nullptr;
  int attributes[] = {drv::kCuPointerAttributeMemoryType,     drv::kCuPointerAttributeIsManaged,
                      drv::kCuPointerAttributeDeviceOrdinal,  drv::kCuPointerAttributeRangeStartAddr,
                      drv::kCuPointerAttributeRangeSize,      drv::kCuPointerAttributeContext};
  void* values[] = {&memory_type, &managed, &ordinal, &start, &size, &context};
  // Unknown pointers are not an error here: their attributes stay zero.
  if (drv::CUresult r = d.pointer_get_attributes(static_cast<unsigned>(std::size(attributes)), attributes, values,
                                                 static_cast<drv::CUdeviceptr>(address(p)));
      r != drv::kCudaSuccess)
    throw TransportError(rank, -1, op, fmt::format("querying {} ({}): {}", what, p, drv::cuda_error_text(d, r)));
  if (memory_type != drv::kCuMemoryTypeDevice && !managed)
    invalid(rank, op, fmt::format("{} ({}) is not CUDA device memory", what, p));
  if (size && (address(p) < start || address(p) - start > size || size - (address(p) - start) < bytes))
    invalid(rank, op,
            fmt::format("{}: {} bytes at {} run past its allocation ({} bytes at {:#x})", what, bytes, p, size, start));
  return Placement{ordinal, context};
}

// The context the launch runs in: the stream's, or for the default streams the current one,
// made the buffer's own when the thread has none.
drv::CUcontext launch_context(const drv::CudaDriver& d, int rank, const char* op, Stream stream, const void* buffer) {
  drv::CUcontext ctx = nullptr;
  if (stream && stream != drv::kCuStreamLegacy && stream != drv::kCuStreamPerThread) {
    if (drv::CUresult r = d.stream_get_ctx(stream, &ctx); r != drv::kCudaSuccess)
      invalid(rank, op, fmt::format("stream {} is not a usable CUDA stream: {}", stream, drv::cuda_error_text(d, r)));
    return ctx;
  }
  if (d.ctx_get_current(&ctx) == drv::kCudaSuccess && ctx) return ctx;
  if (!drv::make_pointer_context_current(d, buffer) || d.ctx_get_current(&ctx) != drv::kCudaSuccess || !ctx)
    throw TransportError(rank, -1, op, fmt::format("no CUDA context for the buffer at {}", buffer));
  return ctx;
}

int multiprocessors(const drv::CudaDriver& d, int ordinal) {
  static std::array<std::atomic<int>, 64> cached{};
  const bool cacheable = ordinal >= 0 && static_cast<size_t>(ordinal) < cached.size();
  if (cacheable)
    if (int n = cached[static_cast<size_t>(ordinal)].load(std::memory_order_relaxed)) return n;
  drv::CUdevice device = 0;
  int n = 0;
  if (d.device_get(&device, std::max(ordinal, 0)) != drv::kCudaSuccess ||
      d.device_get_attribute(&n, drv::kCuDeviceAttributeMultiprocessorCount, device) != drv::kCudaSuccess || n <= 0)
    n = 1;  // still correct (grid-stride), only slower
  if (cacheable) cached[static_cast<size_t>(ordinal)].store(n, std::memory_order_relaxed);
  return n;
}

// Checks every buffer against the stream and returns the device they are on.
int check_placement(const drv::CudaDriver& d, int rank, const char* op, Stream stream,
                    std::initializer_list<std::pair<const char*, const void*>> buffers, size_t bytes) {
  const drv::CUcontext ctx = launch_context(d, rank, op, stream, buffers.begin()->second);
  int ordinal = -1;
  for (const auto& [what, p] : buffers) {
    const Placement at = check_device_memory(d, rank, op, what, p, bytes);
    if (ordinal >= 0 && at.ordinal != ordinal)
      invalid(rank, op, fmt::format("{} is on GPU {}, the other buffers on GPU {}", what, at.ordinal, ordinal));
    ordinal = at.ordinal;
    // Memory from the stream-ordered allocator names no context; the rest must be the stream's.
    if (at.context && at.context != ctx)
      invalid(rank, op, fmt::format("{} ({}) belongs to another CUDA context than the stream", what, p));
  }
  return ordinal;
}

// `name` is formatted only when the launch fails.
template <typename Name>
void launch(const drv::CudaDriver& d, int rank, const char* op, drv::CUkernel kernel, Name name, unsigned blocks,
            Stream stream, void** params, size_t count) {
  if (drv::CUresult r = d.launch_kernel(kernel, blocks, 1, 1, kThreadsPerBlock, 1, 1, 0, stream, params, nullptr);
      r != drv::kCudaSuccess)
    throw TransportError(rank, -1, op,
                         fmt::format("launching {} on {} elements: {}", name(), count, drv::cuda_error_text(d, r)));
}

}  // namespace

bool built() { return !embedded_image().empty(); }

const char* architectures() { return embedded_architectures(); }

bool available(std::string* why) {
  const Kernels& k = kernels();
  if (why) *why = k.error;
  return k.error.empty();
}

void combine(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op, Stream stream,
             int rank) {
  if (!known(type)) invalid(rank, kCombine, fmt::format("unknown data type {}", static_cast<int>(type)));
  if (!known(op)) invalid(rank, kCombine, fmt::format("unknown reduction {}", static_cast<int>(op)));
  if (count == 0) return;
  check_buffer(rank, kCombine, "dst", dst, count, type);
  check_buffer(rank, kCombine, "a", a, count, type);
  check_buffer(rank, kCombine, "b", b, count, type);
  const size_t bytes = count * size_of(type);
  check_aliasing(rank, dst, a, bytes, "a");
  check_aliasing(rank, dst, b, bytes, "b");

  const Kernels& k = usable_kernels(rank, kCombine);
  const int ordinal = check_placement(*k.driver, rank, kCombine, stream, {{"dst", dst}, {"a", a}, {"b", b}}, bytes);
  const size_t t = static_cast<size_t>(type), o = op_index(op);
  Span span = plan_span(address(dst), address(a), address(b), count, size_of(type));
  HostNaN nan = k.nan;
  void* params[] = {&dst, &a, &b, &span, &nan};
  launch(*k.driver, rank, kCombine, k.combine[t][o], [&] { return combine_name(t, o); },
         blocks_for(span, size_of(type), multiprocessors(*k.driver, ordinal)), stream, params, count);
}

void divide(void* buf, size_t count, DataType type, int divisor, Stream stream, int rank) {
  if (!known(type)) invalid(rank, kDivide, fmt::format("unknown data type {}", static_cast<int>(type)));
  if (divisor < 1) invalid(rank, kDivide, fmt::format("divisor {} is not positive", divisor));
  if ((type == DataType::Int8 || type == DataType::UInt8) && divisor % 256 == 0)
    invalid(rank, kDivide, fmt::format("divisor {} is 0 as an {} (the host divides by it in that type)", divisor,
                                       to_string(type)));
  if (count == 0 || divisor == 1) return;  // as the host: nothing to do, no launch
  check_buffer(rank, kDivide, "buf", buf, count, type);

  const Kernels& k = usable_kernels(rank, kDivide);
  const int ordinal = check_placement(*k.driver, rank, kDivide, stream, {{"buf", buf}}, count * size_of(type));
  const size_t t = static_cast<size_t>(type);
  Span span = plan_span(address(buf), address(buf), address(buf), count, size_of(type));
  HostNaN nan = k.nan;
  void* params[] = {&buf, &span, &divisor, &nan};
  launch(*k.driver, rank, kDivide, k.divide[t], [&] { return divide_name(t); },
         blocks_for(span, size_of(type), multiprocessors(*k.driver, ordinal)), stream, params, count);
}

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (size_t t = 0; t < kTypes; ++t) {
    for (size_t o = 0; o < kOps; ++o) names.push_back(combine_name(t, o));
    names.push_back(divide_name(t));
  }
  return names;
}

}  // namespace ringlink::reduce::cuda
