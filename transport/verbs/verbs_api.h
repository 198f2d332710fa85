// The verbs the transport uses, as a table of function pointers. Either libibverbs fills it
// (loaded with dlopen, so one binary runs with and without rdma-core) or the software verbs
// test double in soft/ does. Nothing outside this table calls a verbs function, so the
// transport cannot tell the two apart.
#pragma once

#include <infiniband/verbs.h>

#include <string>

namespace ringlink::verbs {

struct VerbsApi {
  const char* origin = "";  // "libibverbs.so.1" or "soft"
  bool is_soft = false;

  ibv_device** (*get_device_list)(int* num_devices) = nullptr;
  void (*free_device_list)(ibv_device** list) = nullptr;
  const char* (*get_device_name)(ibv_device* device) = nullptr;
  ibv_context* (*open_device)(ibv_device* device) = nullptr;
  int (*close_device)(ibv_context* context) = nullptr;
  int (*query_device)(ibv_context* context, ibv_device_attr* attr) = nullptr;
  int (*query_port)(ibv_context* context, uint8_t port, ibv_port_attr* attr) = nullptr;
  int (*query_gid)(ibv_context* context, uint8_t port, int index, ibv_gid* gid) = nullptr;
  ibv_pd* (*alloc_pd)(ibv_context* context) = nullptr;
  int (*dealloc_pd)(ibv_pd* pd) = nullptr;
  ibv_mr* (*reg_mr)(ibv_pd* pd, void* addr, size_t length, int access) = nullptr;
  // Optional (IBVERBS_1.12): null when the library is older.
  ibv_mr* (*reg_dmabuf_mr)(ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd, int access) = nullptr;
  int (*dereg_mr)(ibv_mr* mr) = nullptr;
  ibv_cq* (*create_cq)(ibv_context* context, int cqe, void* cq_context, ibv_comp_channel* channel,
                       int comp_vector) = nullptr;
  int (*destroy_cq)(ibv_cq* cq) = nullptr;
  ibv_qp* (*create_qp)(ibv_pd* pd, ibv_qp_init_attr* attr) = nullptr;
  int (*modify_qp)(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask) = nullptr;
  int (*query_qp)(ibv_qp* qp, ibv_qp_attr* attr, int attr_mask, ibv_qp_init_attr* init_attr) = nullptr;
  int (*destroy_qp)(ibv_qp* qp) = nullptr;
  // Static inline in verbs.h (they dispatch through context->ops); the real table wraps them.
  int (*post_send)(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad_wr) = nullptr;
  int (*post_recv)(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad_wr) = nullptr;
  int (*poll_cq)(ibv_cq* cq, int num_entries, ibv_wc* wc) = nullptr;
  int (*get_async_event)(ibv_context* context, ibv_async_event* event) = nullptr;
  void (*ack_async_event)(ibv_async_event* event) = nullptr;
  const char* (*wc_status_str)(ibv_wc_status status) = nullptr;
  const char* (*event_type_str)(ibv_event_type type) = nullptr;
  // Optional: what a vendor error code means (the software verbs know theirs).
  const char* (*vendor_error_str)(uint32_t vendor_err) = nullptr;
};

// libibverbs, loaded once per process from `library` (Options::ib_verbs_library,
// RINGLINK_IBVERBS_LIB; empty: "libibverbs.so.1"). Null when it cannot be loaded, or when another
// library was loaded before; `why` then says why ("libibverbs.so.1: cannot open shared object
// file", "... lacks ibv_create_qp@IBVERBS_1.1").
const VerbsApi* load_libibverbs(const std::string& library, std::string* why);

// The software verbs (soft/soft_verbs.cc).
const VerbsApi& soft_verbs();

// Whether `hca` (RINGLINK_IB_HCA) selects the software verbs.
bool names_soft_device(const std::string& hca);

}  // namespace ringlink::verbs
