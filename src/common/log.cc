#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "bootstrap/environment.h"

namespace ringlink::log {
namespace {

// Read before any communicator exists, so logging during start-up already follows it; an
// unknown value stays WARN here and is refused when a communicator reads its Options.
LogLevel level_from_env() {
  auto v = detail::environment_variable("RINGLINK_DEBUG");
  return v ? parse_log_level(*v).value_or(LogLevel::Warn) : LogLevel::Warn;
}

std::atomic<int> g_level{static_cast<int>(level_from_env())};
std::atomic<int> g_rank{-1};

}  // namespace

void set_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
void set_rank(int rank) { g_rank.store(rank); }
bool enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }

void write(LogLevel level, std::string_view message) {
  int rank = g_rank.load();
  std::string line = rank >= 0 ? fmt::format("ringlink[{}] {}: {}\n", rank, to_string(level), message)
                               : fmt::format("ringlink {}: {}\n", to_string(level), message);
  // One write() per line so lines from threads and ranks do not interleave mid-line.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace ringlink::log
