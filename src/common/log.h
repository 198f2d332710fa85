// Logging: one line per message on stderr, prefixed with the rank; quiet by default (WARN).
#pragma once

#include <fmt/format.h>

#include <string_view>

#include "ringlink/options.h"

namespace ringlink::log {

void set_level(LogLevel level);
void set_rank(int rank);
bool enabled(LogLevel level);
void write(LogLevel level, std::string_view message);

template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(LogLevel::Warn)) write(LogLevel::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(LogLevel::Info)) write(LogLevel::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void trace(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(LogLevel::Trace)) write(LogLevel::Trace, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ringlink::log
