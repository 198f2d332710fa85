#include "util/log.h"

#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace yolo {

namespace {
std::mutex g_log_mutex;
}

void log_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::fputs(line.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

bool stderr_is_tty() { return isatty(fileno(stderr)) != 0; }

}  // namespace yolo
