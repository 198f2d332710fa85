// --plot: the PNG is drawn by ringlink-plot (Python, matplotlib) from the run's JSON.
#pragma once

#include <string>

#include "bench/report.h"

namespace ringlink::bench {

// Draws `info` into `png` with ringlink-plot, reading `json` when the run wrote one (else a
// temporary file, removed afterwards). A failure is reported on stderr; it never fails the run.
void draw_plot(const std::string& png, const std::string& json, const RunInfo& info);

}  // namespace ringlink::bench
