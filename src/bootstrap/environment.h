// The one reader of the process environment. Options::from_environment reads every RINGLINK_*
// variable through it; a setting needed before any communicator exists (the start-up log
// level) uses it too, so docs/environment.md can list every variable from one place.
#pragma once

#include <optional>
#include <string>

namespace ringlink::detail {

std::optional<std::string> environment_variable(const char* name);

}  // namespace ringlink::detail
