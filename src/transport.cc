// Transport selection and the shared request wait.
#include "transport.h"

#include <fmt/format.h>

#include "common/log.h"
#include "ringlink/error.h"
#include "transport/ucx/ucx_transport.h"

namespace ringlink {

std::unique_ptr<Transport> create_transport(const TransportSetup& setup) {
  switch (setup.options.transport) {
    case TransportKind::Verbs:
      throw TransportError(setup.rank, -1, "create transport", "verbs unavailable: ringlink was built without it");
    case TransportKind::Ucx:
      log::info("transport: UCX (RINGLINK_TRANSPORT=ucx)");
      return create_ucx_transport(setup);
    case TransportKind::Auto:
      log::info("transport: UCX (auto: no verbs transport in this build)");
      return create_ucx_transport(setup);
  }
  return create_ucx_transport(setup);
}

void wait_request(Transport& transport, Request& req, Deadline deadline, int rank, int peer, const char* operation) {
  while (!req.test()) {
    if (deadline.expired())
      throw TimeoutError(rank, peer, operation, fmt::format("rank {} did not complete the exchange in time", peer));
    transport.progress();
  }
}

}  // namespace ringlink
