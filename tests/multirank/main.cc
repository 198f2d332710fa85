// main() for multi-rank test programs: creates the shared communicator from the environment,
// and keeps output to rank 0 unless a test fails.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "multirank/world.h"

#ifdef RINGLINK_TEST_NEEDS_GPU
#include <cstdlib>
#include <string>
#include <string_view>

#include "reduce/cuda/reduce.h"

// Device-buffer programs run on a GPU, or on the host stand-in when RINGLINK_DEVICE_OPS says so;
// without either every rank exits 77, which meson reports as SKIP.
static bool gpu_or_standin(std::string* why) {
  const char* ops = std::getenv("RINGLINK_DEVICE_OPS");
  if (ops && std::string_view(ops).starts_with("standin")) return true;
  return ringlink::reduce::cuda::available(why);
}
#endif

namespace ringlink::testing {
namespace {
std::unique_ptr<Communicator> g_world;
}
Communicator& world() { return *g_world; }
}  // namespace ringlink::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
#ifdef RINGLINK_TEST_NEEDS_GPU
  if (std::string why; !gpu_or_standin(&why)) {
    std::printf("SKIP: no usable GPU here: %s\n", why.c_str());
    return 77;
  }
#endif
  try {
    ringlink::testing::g_world = std::make_unique<ringlink::Communicator>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot create the communicator: %s\n", e.what());
    return 2;
  }
  if (ringlink::testing::g_world->rank() != 0) {
    // Other ranks report failures only.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    struct FailurePrinter : ::testing::EmptyTestEventListener {
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed()) std::fprintf(stderr, "%s:%d: Failure\n%s\n", r.file_name(), r.line_number(), r.summary());
      }
    };
    listeners.Append(new FailurePrinter);
  }
  int rc = RUN_ALL_TESTS();
  ringlink::testing::g_world.reset();
  return rc;
}
