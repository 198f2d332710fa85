// Logging to stderr, one line each. Quiet helpers so the training code reads
// as what it does rather than how it prints.
#pragma once

#include <fmt/core.h>

#include <string>

namespace yolo {

void log_line(const std::string& line);

template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log_line(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log_line("WARNING: " + fmt::format(f, std::forward<Args>(args)...));
}

// True when stderr is a terminal (progress bars redraw in place there).
bool stderr_is_tty();

}  // namespace yolo
