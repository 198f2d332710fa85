// Loads libibverbs with dlopen and fills the verbs table from its versioned symbols.
#include <dlfcn.h>

#include <cstring>

#include <fmt/format.h>

#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs {
namespace {

// The exported ibv_query_port takes the old, shorter port attribute struct; providers that
// know the full one offer it through the extended context (what verbs.h's inline does too).
int (*g_query_port_compat)(ibv_context*, uint8_t, ibv_port_attr*) = nullptr;

int real_query_port(ibv_context* context, uint8_t port, ibv_port_attr* attr) {
  verbs_context* vctx = verbs_get_ctx_op(context, query_port);
  if (vctx) return vctx->query_port(context, port, attr, sizeof(*attr));
  std::memset(attr, 0, sizeof(*attr));
  return g_query_port_compat(context, port, attr);
}

int real_post_send(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad) { return qp->context->ops.post_send(qp, wr, bad); }
int real_post_recv(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad) { return qp->context->ops.post_recv(qp, wr, bad); }
int real_poll_cq(ibv_cq* cq, int n, ibv_wc* wc) { return cq->context->ops.poll_cq(cq, n, wc); }

struct Loaded {
  std::string library;
  VerbsApi api;
  std::string error;
  bool ok = false;
};

Loaded load(const std::string& library) {
  Loaded out;
  out.library = library;
  const char* name = library.c_str();
  void* lib = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = ::dlerror();
    out.error = e ? e : fmt::format("cannot load {}", name);
    return out;
  }
  std::string missing;
  auto required = [&](auto& slot, const char* symbol, const char* version) {
    void* p = ::dlvsym(lib, symbol, version);
    if (!p) {
      if (!missing.empty()) missing += ", ";
      missing += fmt::format("{}@{}", symbol, version);
    }
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(p);
  };
  VerbsApi& a = out.api;
  a.origin = "libibverbs.so.1";
  required(a.get_device_list, "ibv_get_device_list", "IBVERBS_1.1");
  required(a.free_device_list, "ibv_free_device_list", "IBVERBS_1.1");
  required(a.get_device_name, "ibv_get_device_name", "IBVERBS_1.1");
  required(a.open_device, "ibv_open_device", "IBVERBS_1.1");
  required(a.close_device, "ibv_close_device", "IBVERBS_1.1");
  required(a.query_device, "ibv_query_device", "IBVERBS_1.1");
  required(g_query_port_compat, "ibv_query_port", "IBVERBS_1.1");
  required(a.query_gid, "ibv_query_gid", "IBVERBS_1.1");
  required(a.alloc_pd, "ibv_alloc_pd", "IBVERBS_1.1");
  required(a.dealloc_pd, "ibv_dealloc_pd", "IBVERBS_1.1");
  required(a.reg_mr, "ibv_reg_mr", "IBVERBS_1.1");
  required(a.dereg_mr, "ibv_dereg_mr", "IBVERBS_1.1");
  required(a.create_cq, "ibv_create_cq", "IBVERBS_1.1");
  required(a.destroy_cq, "ibv_destroy_cq", "IBVERBS_1.1");
  required(a.create_qp, "ibv_create_qp", "IBVERBS_1.1");
  required(a.modify_qp, "ibv_modify_qp", "IBVERBS_1.1");
  required(a.query_qp, "ibv_query_qp", "IBVERBS_1.1");
  required(a.destroy_qp, "ibv_destroy_qp", "IBVERBS_1.1");
  required(a.get_async_event, "ibv_get_async_event", "IBVERBS_1.1");
  required(a.ack_async_event, "ibv_ack_async_event", "IBVERBS_1.1");
  required(a.wc_status_str, "ibv_wc_status_str", "IBVERBS_1.1");
  required(a.event_type_str, "ibv_event_type_str", "IBVERBS_1.1");
  if (!missing.empty()) {
    out.error = fmt::format("{} lacks {}", name, missing);
    ::dlclose(lib);
    return out;
  }
  // Optional: dma-buf registration arrived with rdma-core 34 (IBVERBS_1.12).
  a.reg_dmabuf_mr = reinterpret_cast<decltype(a.reg_dmabuf_mr)>(::dlvsym(lib, "ibv_reg_dmabuf_mr", "IBVERBS_1.12"));
  a.query_port = &real_query_port;
  a.post_send = &real_post_send;
  a.post_recv = &real_post_recv;
  a.poll_cq = &real_poll_cq;
  out.ok = true;
  // The library stays loaded for the life of the process (providers keep pointers into it).
  return out;
}

}  // namespace

const VerbsApi* load_libibverbs(const std::string& library, std::string* why) {
  const std::string name = library.empty() ? "libibverbs.so.1" : library;
  // One library per process: the compatibility query_port above is process-wide.
  static const Loaded loaded = load(name);
  if (loaded.library != name) {
    if (why)
      *why = fmt::format("{} was not loaded: this process uses {} (one libibverbs per process)", name, loaded.library);
    return nullptr;
  }
  if (!loaded.ok) {
    if (why) *why = loaded.error;
    return nullptr;
  }
  return &loaded.api;
}

bool names_soft_device(const std::string& hca) { return hca == "soft" || hca.rfind("soft:", 0) == 0; }

}  // namespace ringlink::verbs
