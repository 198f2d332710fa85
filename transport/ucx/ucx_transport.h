// UCX transport: UCP tag messages over whatever UCX selects — TCP (UCX_TLS=tcp), shared
// memory between ranks on one host (its default there), or InfiniBand through UCX.
#pragma once

#include <memory>

#include "transport.h"

namespace ringlink {

std::unique_ptr<Transport> create_ucx_transport(const TransportSetup& setup);

}  // namespace ringlink
