// Transport selection, and the errors for a peer's unusable endpoint.
#include "transport.h"

#include <fmt/format.h>

#include "common/log.h"
#include "ringlink/error.h"
#include "ringlink_config.h"
#include "transport/ucx/ucx_transport.h"
#if RINGLINK_HAVE_VERBS
#include "transport/verbs/devices.h"
#include "transport/verbs/verbs_transport.h"
#endif

namespace ringlink {

std::unique_ptr<Transport> create_transport(const TransportSetup& setup) {
  const Options& o = setup.options;
  switch (o.transport) {
    case TransportKind::Verbs: {
#if RINGLINK_HAVE_VERBS
      std::string why;
      if (!verbs::active_port_exists(o, &why))
        throw TransportError(setup.rank, -1, "create transport",
                             why.rfind("verbs unavailable", 0) == 0 ? why : "verbs unavailable: " + why);
      log::info("transport: verbs (RINGLINK_TRANSPORT=verbs: {})", why);
      return create_verbs_transport(setup);
#else
      throw TransportError(setup.rank, -1, "create transport", "verbs unavailable: ringlink was built without it");
#endif
    }
    case TransportKind::Ucx:
      log::info("transport: UCX (RINGLINK_TRANSPORT=ucx)");
      return create_ucx_transport(setup);
    case TransportKind::Auto: {
#if RINGLINK_HAVE_VERBS
      std::string why;
      bool verbs_ok = false;
      try {
        verbs_ok = verbs::active_port_exists(o, &why);
      } catch (const std::exception& e) {
        why = e.what();
      }
      if (verbs_ok) {
        log::info("transport: verbs (auto: {})", why);
        return create_verbs_transport(setup);
      }
      log::info("transport: UCX (auto: no active RDMA port: {})", why);
#else
      log::info("transport: UCX (auto: ringlink was built without the verbs transport)");
#endif
      return create_ucx_transport(setup);
    }
  }
  return create_ucx_transport(setup);
}

void throw_refused_endpoint(int rank, int peer, const char* transport, ErrorKind kind, const std::string& why) {
  if (kind == ErrorKind::Mismatch)
    throw MismatchError(rank, peer, "connect",
                        fmt::format("rank {} published an address this transport cannot use: {} (is "
                                    "RINGLINK_TRANSPORT the same on every rank, and ringlink the same version?)",
                                    peer, why));
  throw TransportError(rank, peer, "connect",
                       fmt::format("rank {} published a malformed {} endpoint: {}", peer, transport, why));
}

void require_endpoint_for(int rank, int peer, int from, int to) {
  if (from != peer || to != rank)
    throw TransportError(rank, peer, "connect",
                         fmt::format("the endpoint published as rank {}'s for rank {} says it is rank {}'s for rank {}",
                                     peer, rank, from, to));
}

}  // namespace ringlink
