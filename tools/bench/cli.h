// The command line every benchmark tool shares, in nccl-tests' spelling.
#pragma once

#include <optional>

#include "bench/config.h"

namespace CLI {
class App;
}

namespace ringlink::bench {

// Registers the options every tool shares (-b -e -f -i -n -w -c -d -o -r -a, --csv, --json, ...).
// The collective is a positional argument or --collective. Validation happens in finish_config.
void add_common_options(CLI::App& app, Config& cfg);
// Checks what CLI11 cannot (sizes, type/op names already parsed); throws CLI::ValidationError.
void finish_config(Config& cfg);

// Parses argv into `app` (and so `cfg`), then finish_config. On --help or a bad option, prints
// what CLI11 prints and returns the status to exit with; nullopt when the tool should run.
std::optional<int> parse_command_line(CLI::App& app, Config& cfg, int argc, char** argv);

}  // namespace ringlink::bench
