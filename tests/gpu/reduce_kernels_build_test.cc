// What can be checked of the GPU reductions without a GPU: the library carries no load-time
// dependency on CUDA, reports plainly when it cannot reduce on a GPU, rejects bad arguments
// before touching the driver, splits work as intended, and embeds GPU code for the configured
// architectures with every kernel the launcher asks for, compiled without fast math.
#include <gtest/gtest.h>

#include <elf.h>
#include <link.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/cuda_driver.h"
#include "reduce/cuda/image.h"
#include "reduce/cuda/launch_plan.h"
#include "reduce/cuda/reduce.h"
#include "ringlink/error.h"
#include "ringlink_config.h"

using namespace ringlink;
namespace gpu = ringlink::reduce::cuda;

namespace {

// ---- the shared library's dynamic dependencies ----------------------------------------------

struct Needed {
  std::string path;
  std::vector<std::string> libraries;
};

// DT_NEEDED of the loaded libringlink, read from its dynamic section in memory.
int collect_needed(dl_phdr_info* info, size_t, void* out) {
  auto* needed = static_cast<Needed*>(out);
  if (!info->dlpi_name || !std::strstr(info->dlpi_name, "libringlink.so")) return 0;
  needed->path = info->dlpi_name;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
    const auto* dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    const char* strtab = nullptr;
    for (const ElfW(Dyn)* d = dyn; d->d_tag != DT_NULL; ++d) {
      if (d->d_tag != DT_STRTAB) continue;
      // ld.so relocates this entry in place on most targets; where it does not, it is an offset.
      ElfW(Addr) at = d->d_un.d_ptr;
      if (at < info->dlpi_addr) at += info->dlpi_addr;
      strtab = reinterpret_cast<const char*>(at);
    }
    for (const ElfW(Dyn)* d = dyn; strtab && d->d_tag != DT_NULL; ++d)
      if (d->d_tag == DT_NEEDED) needed->libraries.emplace_back(strtab + d->d_un.d_val);
  }
  return 1;
}

TEST(GpuReduceBuild, LibraryNeedsNoCudaLibraryToLoad) {
  Needed needed;
  dl_iterate_phdr(collect_needed, &needed);
  ASSERT_FALSE(needed.path.empty()) << "libringlink is not loaded into this test";
  ASSERT_FALSE(needed.libraries.empty()) << needed.path << ": no DT_NEEDED entries found";
  for (const auto& lib : needed.libraries) {
    EXPECT_EQ(lib.find("libcuda"), std::string::npos) << needed.path << " needs " << lib;
    EXPECT_EQ(lib.find("libnvrtc"), std::string::npos) << needed.path << " needs " << lib;
  }
}

// ---- behaviour with and without a GPU --------------------------------------------------------

TEST(GpuReduceBuild, ReportsWhetherItWasBuiltWithKernels) {
#if RINGLINK_HAVE_CUDA
  EXPECT_TRUE(gpu::built());
  EXPECT_STREQ(gpu::architectures(), RINGLINK_CUDA_ARCHITECTURES);
#else
  EXPECT_FALSE(gpu::built());
  EXPECT_STREQ(gpu::architectures(), "");
  std::string why;
  EXPECT_FALSE(gpu::available(&why));
  EXPECT_NE(why.find("built without"), std::string::npos) << why;
#endif
}

TEST(GpuReduceBuild, WithoutAGpuSaysWhyAndRefusesWork) {
  if (gpu::built() && cuda::available()) GTEST_SKIP() << "a GPU is present: the GPU test covers this machine";
  std::string why;
  EXPECT_FALSE(gpu::available(&why));
  EXPECT_FALSE(why.empty());
  if (gpu::built()) {
    EXPECT_NE(why.find("driver"), std::string::npos) << why;
  }
  alignas(16) float x[8] = {};
  try {
    gpu::combine(x, x, x, 8, DataType::Float32, ReduceOp::Sum, nullptr, 3);
    ADD_FAILURE() << "combine ran without a GPU";
  } catch (const InvalidArgumentError& e) {
    EXPECT_EQ(e.rank(), 3);
    EXPECT_EQ(e.operation(), "reduce::cuda::combine");
    EXPECT_NE(e.detail().find("unavailable"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu::divide(x, 8, DataType::Float32, 2, nullptr), InvalidArgumentError);
  // Nothing to do is done without a GPU, as on the host.
  EXPECT_NO_THROW(gpu::combine(x, x, x, 0, DataType::Float32, ReduceOp::Sum, nullptr));
  EXPECT_NO_THROW(gpu::divide(x, 8, DataType::Float32, 1, nullptr));
}

// Argument checks come before the driver, so they hold here as on a GPU machine.
TEST(GpuReduceBuild, RejectsBadArgumentsBeforeTheDriver) {
  alignas(16) static unsigned char bytes[256];
  void* p = bytes;
  auto invalid_combine = [&](void* dst, const void* a, const void* b, size_t n, DataType t, ReduceOp op,
                             const char* expect) {
    try {
      gpu::combine(dst, a, b, n, t, op, nullptr);
      ADD_FAILURE() << expect << ": accepted";
    } catch (const InvalidArgumentError& e) {
      EXPECT_NE(e.detail().find(expect), std::string::npos) << e.what();
    }
  };
  invalid_combine(p, p, p, 4, static_cast<DataType>(42), ReduceOp::Sum, "unknown data type");
  invalid_combine(p, p, p, 4, DataType::Float32, static_cast<ReduceOp>(9), "unknown reduction");
  invalid_combine(nullptr, p, p, 4, DataType::Float32, ReduceOp::Sum, "dst is null");
  invalid_combine(p, nullptr, p, 4, DataType::Float32, ReduceOp::Sum, "a is null");
  invalid_combine(bytes + 2, p, p, 4, DataType::Float32, ReduceOp::Sum, "not aligned");
  invalid_combine(p, p, bytes + 4, 4, DataType::Int64, ReduceOp::Max, "not aligned");
  invalid_combine(bytes + 4, p, bytes + 64, 4, DataType::Float32, ReduceOp::Sum, "overlaps a");
  invalid_combine(p, bytes + 128, bytes + 8, 4, DataType::Float32, ReduceOp::Sum, "overlaps b");
  invalid_combine(p, p, p, SIZE_MAX / 2, DataType::Float32, ReduceOp::Sum, "overflow");

  auto invalid_divide = [&](size_t n, DataType t, int divisor, const char* expect) {
    try {
      gpu::divide(p, n, t, divisor, nullptr);
      ADD_FAILURE() << expect << ": accepted";
    } catch (const InvalidArgumentError& e) {
      EXPECT_EQ(e.operation(), "reduce::cuda::divide");
      EXPECT_NE(e.detail().find(expect), std::string::npos) << e.what();
    }
  };
  invalid_divide(4, DataType::Float32, 0, "not positive");
  invalid_divide(4, DataType::Int32, -2, "not positive");
  invalid_divide(4, DataType::UInt8, 256, "is 0 as");
  invalid_divide(4, DataType::Int8, 512, "is 0 as");
}

// ---- how work splits ---------------------------------------------------------------------------

TEST(GpuReduceBuild, SpanSplitsAtTheSharedSixteenByteBoundary) {
  // Aligned floats: no head, packs of 4, the rest a tail.
  auto s = gpu::plan_span(0x1000, 0x2000, 0x3000, 11, 4);
  EXPECT_EQ(s.count, 11u);
  EXPECT_EQ(s.head, 0u);
  EXPECT_EQ(s.packs, 2u);
  // All three 4 bytes past a boundary: three scalars first, then packs.
  s = gpu::plan_span(0x1004, 0x2004, 0x3004, 11, 4);
  EXPECT_EQ(s.head, 3u);
  EXPECT_EQ(s.packs, 2u);
  // Fewer elements than reach the boundary: all head.
  s = gpu::plan_span(0x1002, 0x2002, 0x3002, 5, 1);
  EXPECT_EQ(s.head, 5u);
  EXPECT_EQ(s.packs, 0u);
  // Offsets that differ: no vector body at all.
  s = gpu::plan_span(0x1000, 0x2004, 0x3000, 1000, 4);
  EXPECT_EQ(s.head, 1000u);
  EXPECT_EQ(s.packs, 0u);
  // 8-byte elements one element off: one scalar, then packs of 2.
  s = gpu::plan_span(0x1008, 0x2008, 0x3008, 7, 8);
  EXPECT_EQ(s.head, 1u);
  EXPECT_EQ(s.packs, 3u);
  EXPECT_EQ(gpu::plan_span(0, 0, 0, 0, 2).packs, 0u);
  // Every element is covered once: head + packs * P + tail = count.
  for (uint64_t n : {0ull, 1ull, 7ull, 15ull, 16ull, 17ull, (1ull << 20) + 3})
    for (uintptr_t off : {0u, 1u, 2u, 8u, 15u}) {
      const auto sp = gpu::plan_span(0x100 + off, 0x200 + off, 0x300 + off, n, 1);
      EXPECT_LE(sp.head + sp.packs * 16, n);
      EXPECT_LT(n - sp.head - sp.packs * 16, 16u + (sp.packs ? 0u : n));
      if (sp.packs) {
        EXPECT_EQ((0x100 + off + sp.head) % 16, 0u);
      }
    }
}

TEST(GpuReduceBuild, GridCoversOneTurnUpToWhatStaysResident) {
  // 2^20 float packs: 2^19 threads wanted, capped at 132 SMs x 8 blocks.
  EXPECT_EQ(gpu::blocks_for(gpu::Span{1u << 22, 0, 1u << 20}, 4, 132), 132u * 8);
  // A small reduction: just enough blocks, at least one.
  EXPECT_EQ(gpu::blocks_for(gpu::Span{7, 7, 0}, 4, 132), 1u);
  EXPECT_EQ(gpu::blocks_for(gpu::Span{4096, 0, 1024}, 4, 132), 2u);
  EXPECT_EQ(gpu::blocks_for(gpu::Span{0, 0, 0}, 4, 0), 1u);
  // All scalar (misaligned): one element per thread and turn.
  EXPECT_EQ(gpu::blocks_for(gpu::Span{5000, 5000, 0}, 2, 132), 20u);
}

// ---- the embedded GPU code ---------------------------------------------------------------------

// One entry of a CUDA fatbin container: the header nvcc's fatbinary writes (magic 0xBA55ED50,
// then per entry its kind, sizes and architecture).
struct FatbinEntry {
  unsigned kind;  // 1: PTX, 2: ELF (cubin)
  unsigned arch;  // 80 for sm_80 / compute_80
  uint64_t flags;
  std::string_view payload;
};

template <typename T>
T read_le(std::span<const unsigned char> bytes, size_t at) {
  T v{};
  if (at + sizeof(T) <= bytes.size()) std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

std::vector<FatbinEntry> parse_fatbin(std::span<const unsigned char> image, std::string* error) {
  std::vector<FatbinEntry> entries;
  if (read_le<uint32_t>(image, 0) != 0xBA55ED50u) {
    *error = "no fatbin magic";
    return entries;
  }
  const size_t header = read_le<uint16_t>(image, 6);
  const uint64_t body = read_le<uint64_t>(image, 8);
  if (header + body > image.size()) {
    *error = "fatbin larger than the embedded image";
    return entries;
  }
  for (size_t at = header; at < header + body;) {
    const unsigned kind = read_le<uint16_t>(image, at);
    const uint32_t entry_header = read_le<uint32_t>(image, at + 4);
    const uint64_t payload = read_le<uint64_t>(image, at + 8);
    if (entry_header < 0x30 || at + entry_header + payload > header + body) {
      *error = "truncated fatbin entry";
      return entries;
    }
    entries.push_back(FatbinEntry{kind, read_le<uint32_t>(image, at + 0x1C), read_le<uint64_t>(image, at + 0x28),
                                  std::string_view(reinterpret_cast<const char*>(image.data() + at + entry_header),
                                                   payload)});
    at += entry_header + payload;
  }
  return entries;
}

TEST(GpuReduceBuild, EmbedsEveryKernelForTheConfiguredArchitectures) {
  if (!gpu::built()) GTEST_SKIP() << "built without CUDA: no GPU code to check";
  std::string error;
  const auto entries = parse_fatbin(gpu::embedded_image(), &error);
  ASSERT_TRUE(error.empty()) << error;

  std::vector<std::string> want_code;  // "sm_80", ..., "compute_90"
  for (std::string_view rest = gpu::architectures(); !rest.empty();) {
    const size_t space = rest.find(' ');
    want_code.emplace_back(rest.substr(0, space));
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  }
  ASSERT_GE(want_code.size(), 2u) << "expected at least one cubin and one PTX: " << gpu::architectures();

  const auto names = gpu::kernel_names();
  ASSERT_EQ(names.size(), 8u * 5u) << "four operators and a divide for each of eight types";
  for (const auto& code : want_code) {
    const bool ptx = code.rfind("compute_", 0) == 0;
    const unsigned arch = static_cast<unsigned>(std::stoul(code.substr(code.find('_') + 1)));
    const FatbinEntry* found = nullptr;
    for (const auto& e : entries)
      if (e.kind == (ptx ? 1u : 2u) && e.arch == arch) found = &e;
    ASSERT_NE(found, nullptr) << "no " << code << " in the embedded fatbin";
    if (!ptx) {
      ASSERT_EQ(found->payload.substr(0, 4), std::string_view("\x7f" "ELF", 4)) << code;
      for (const auto& name : names)
        EXPECT_NE(found->payload.find(name + '\0'), std::string_view::npos) << code << " lacks " << name;
      continue;
    }
    // PTX is text (built with --no-compress): every entry point, for this target, and no
    // flush-to-zero or approximate arithmetic anywhere.
    const std::string_view text = found->payload;
    ASSERT_NE(text.find(".target sm_" + std::to_string(arch)), std::string_view::npos)
        << code << " is not readable PTX (compressed? flags " << found->flags << ")";
    for (const auto& name : names)
      EXPECT_NE(text.find(".entry " + name + "("), std::string_view::npos) << code << " lacks " << name;
    EXPECT_EQ(text.find(".ftz"), std::string_view::npos) << "flush-to-zero arithmetic in the kernels";
    EXPECT_EQ(text.find(".approx"), std::string_view::npos) << "approximate arithmetic in the kernels";
    EXPECT_EQ(text.find("fma."), std::string_view::npos) << "contracted multiply-adds in the kernels";
  }
  // Nothing else: the image holds exactly the configured code.
  EXPECT_EQ(entries.size(), want_code.size());
}

}  // namespace
