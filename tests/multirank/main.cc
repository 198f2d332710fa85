// main() for multi-rank test programs: creates the shared communicator from the environment,
// and keeps output to rank 0 unless a test fails.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "multirank/world.h"

namespace ringlink::testing {
namespace {
std::unique_ptr<Communicator> g_world;
}
Communicator& world() { return *g_world; }
}  // namespace ringlink::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
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
