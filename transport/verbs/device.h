// The opened HCA a verbs transport works on: its context, protection domain and the one
// completion queue every QP shares. The transport, its links and every registration hold it, so
// the last of them to go releases it, in the order the verbs require (CQ, PD, context).
#pragma once

#include <infiniband/verbs.h>

#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs {

// What every registration and every QP allows: the peer writes into advertised buffers and the
// GPUDirect flush reads them back.
inline constexpr int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;

struct Device {
  explicit Device(const VerbsApi& a) : api(a) {}
  ~Device() {
    if (cq) api.destroy_cq(cq);
    if (pd) api.dealloc_pd(pd);
    if (ctx) api.close_device(ctx);
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const VerbsApi& api;
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
};

}  // namespace ringlink::verbs
