// Logging to stderr, one line each. Quiet helpers so the training code reads
// as what it does rather than how it prints.
#pragma once

#include <fmt/core.h>

#include <string>

namespace yolo {

// Progress and information: printed by the primary process only (rank 0 of a
// data-parallel job). Warnings and errors go through log_always, from every rank.
void log_line(const std::string& line);
void log_always(const std::string& line);
void set_log_primary(bool primary);
bool log_is_primary();

template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log_line(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log_always("WARNING: " + fmt::format(f, std::forward<Args>(args)...));
}

// True when stderr is a terminal (progress bars redraw in place there).
bool stderr_is_tty();

}  // namespace yolo
