// The software verbs as a VerbsApi table, and the names they give statuses, events and their
// vendor errors.
#include "transport/verbs/soft/entry_points.h"
#include "transport/verbs/soft/soft_verbs.h"
#include "transport/verbs/verbs_api.h"

namespace ringlink::verbs::soft {
namespace {

const char* wc_status_str(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS: return "success";
    case IBV_WC_LOC_LEN_ERR: return "local length error";
    case IBV_WC_LOC_QP_OP_ERR: return "local QP operation error";
    case IBV_WC_LOC_EEC_OP_ERR: return "local EE context operation error";
    case IBV_WC_LOC_PROT_ERR: return "local protection error";
    case IBV_WC_WR_FLUSH_ERR: return "Work Request Flushed Error";
    case IBV_WC_MW_BIND_ERR: return "memory management operation error";
    case IBV_WC_BAD_RESP_ERR: return "bad response error";
    case IBV_WC_LOC_ACCESS_ERR: return "local access error";
    case IBV_WC_REM_INV_REQ_ERR: return "remote invalid request error";
    case IBV_WC_REM_ACCESS_ERR: return "remote access error";
    case IBV_WC_REM_OP_ERR: return "remote operation error";
    case IBV_WC_RETRY_EXC_ERR: return "transport retry counter exceeded";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "RNR retry counter exceeded";
    case IBV_WC_LOC_RDD_VIOL_ERR: return "local RDD violation error";
    case IBV_WC_REM_INV_RD_REQ_ERR: return "remote invalid RD request";
    case IBV_WC_REM_ABORT_ERR: return "aborted error";
    case IBV_WC_INV_EECN_ERR: return "invalid EE context number";
    case IBV_WC_INV_EEC_STATE_ERR: return "invalid EE context state";
    case IBV_WC_FATAL_ERR: return "fatal error";
    case IBV_WC_RESP_TIMEOUT_ERR: return "response timeout error";
    case IBV_WC_GENERAL_ERR: return "general error";
    default: return "unknown";
  }
}

const char* event_type_str(ibv_event_type type) {
  switch (type) {
    case IBV_EVENT_CQ_ERR: return "CQ error";
    case IBV_EVENT_QP_FATAL: return "local work queue catastrophic error";
    case IBV_EVENT_QP_REQ_ERR: return "invalid request local work queue error";
    case IBV_EVENT_QP_ACCESS_ERR: return "local access violation work queue error";
    case IBV_EVENT_COMM_EST: return "communication established";
    case IBV_EVENT_PORT_ACTIVE: return "port active";
    case IBV_EVENT_PORT_ERR: return "port error";
    case IBV_EVENT_DEVICE_FATAL: return "local catastrophic error";
    default: return "unknown";
  }
}

VerbsApi make_table() {
  VerbsApi a;
  a.origin = "soft";
  a.is_soft = true;
  a.get_device_list = get_device_list;
  a.free_device_list = free_device_list;
  a.get_device_name = get_device_name;
  a.open_device = open_device;
  a.close_device = close_device;
  a.query_device = query_device;
  a.query_port = query_port;
  a.query_gid = query_gid;
  a.alloc_pd = alloc_pd;
  a.dealloc_pd = dealloc_pd;
  a.reg_mr = reg_mr;
  a.reg_dmabuf_mr = reg_dmabuf_mr;
  a.dereg_mr = dereg_mr;
  a.create_cq = create_cq;
  a.destroy_cq = destroy_cq;
  a.create_qp = create_qp;
  a.modify_qp = modify_qp;
  a.query_qp = query_qp;
  a.destroy_qp = destroy_qp;
  a.post_send = post_send;
  a.post_recv = post_recv;
  a.poll_cq = poll_cq;
  a.get_async_event = get_async_event;
  a.ack_async_event = ack_async_event;
  a.wc_status_str = wc_status_str;
  a.event_type_str = event_type_str;
  a.vendor_error_str = vendor_error_text;
  return a;
}

}  // namespace

const char* vendor_error_text(uint32_t v) {
  switch (v) {
    case kVendorNone: return "no error";
    case kVendorBadKey: return "no memory region with that key in the protection domain";
    case kVendorOutOfBounds: return "access outside the memory region";
    case kVendorAccessDenied: return "the memory region does not allow this access";
    case kVendorPeerGone: return "the remote end is gone";
    case kVendorReceiverNotReady: return "no receive posted (receiver not ready)";
    case kVendorLength: return "message longer than the posted receive";
    case kVendorLocalProtection: return "local scatter/gather entry outside a registered region";
    default: return "unknown vendor error";
  }
}

}  // namespace ringlink::verbs::soft

namespace ringlink::verbs {

const VerbsApi& soft_verbs() {
  static const VerbsApi table = soft::make_table();
  return table;
}

}  // namespace ringlink::verbs
