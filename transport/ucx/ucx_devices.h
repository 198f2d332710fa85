// What UCX offers on this machine: its version and every transport/device pair of every
// memory domain, as the tools print it (ringlink-bench --list-devices).
#pragma once

#include <string>

namespace ringlink::ucx {

// One header line with the UCX version, then one line per transport resource
// ("  tcp        lo             (memory domain tcp)"); a line saying so when UCX cannot be queried.
std::string list_devices();

}  // namespace ringlink::ucx
