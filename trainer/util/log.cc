#include "util/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace yolo {

namespace {
std::mutex g_log_mutex;
std::atomic<bool> g_primary{true};
}  // namespace

void set_log_primary(bool primary) { g_primary = primary; }
bool log_is_primary() { return g_primary; }

void log_line(const std::string& line) {
  if (g_primary) log_always(line);
}

void log_always(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::fputs(line.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

bool stderr_is_tty() { return isatty(fileno(stderr)) != 0; }

}  // namespace yolo
