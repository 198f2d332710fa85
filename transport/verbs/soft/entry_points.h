// The verbs the software verbs implement, with libibverbs' signatures (table.cc puts them in a
// VerbsApi).
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>

namespace ringlink::verbs::soft {

ibv_device** get_device_list(int* num);
void free_device_list(ibv_device** list);
const char* get_device_name(ibv_device* device);
ibv_context* open_device(ibv_device* device);
int close_device(ibv_context* context);
int query_device(ibv_context* context, ibv_device_attr* attr);
int query_port(ibv_context* context, uint8_t port, ibv_port_attr* attr);
int query_gid(ibv_context* context, uint8_t port, int index, ibv_gid* gid);
ibv_pd* alloc_pd(ibv_context* context);
int dealloc_pd(ibv_pd* pd);
ibv_mr* reg_mr(ibv_pd* pd, void* addr, size_t length, int access);
ibv_mr* reg_dmabuf_mr(ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd, int access);
int dereg_mr(ibv_mr* mr);
ibv_cq* create_cq(ibv_context* context, int cqe, void* cq_context, ibv_comp_channel* channel, int comp_vector);
int destroy_cq(ibv_cq* cq);

ibv_qp* create_qp(ibv_pd* pd, ibv_qp_init_attr* init);
int modify_qp(ibv_qp* qp, ibv_qp_attr* attr, int mask);
int query_qp(ibv_qp* qp, ibv_qp_attr* attr, int mask, ibv_qp_init_attr* init);
int destroy_qp(ibv_qp* qp);
// Whether `access` is a valid set of access flags (for regions and QPs alike).
bool valid_access(int access);

int post_send(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad);
int post_recv(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad);
int poll_cq(ibv_cq* cq, int n, ibv_wc* wc);
int get_async_event(ibv_context* context, ibv_async_event* event);
void ack_async_event(ibv_async_event* event);

}  // namespace ringlink::verbs::soft
