#include "common/cuda_driver.h"

#include <dlfcn.h>

#include <stdexcept>

#include <fmt/format.h>

namespace ringlink::cuda {
namespace {

struct Loaded {
  CudaDriver driver;
  std::string error;
  bool ok = false;
};

Loaded load() {
  Loaded out;
  void* lib = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = ::dlerror();
    out.error = e ? e : "cannot load libcuda.so.1";
    return out;
  }
  std::string missing;
  auto sym = [&](auto& slot, const char* name, bool required = true) {
    void* p = ::dlsym(lib, name);
    if (!p && required) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", name);
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(p);
  };
  CudaDriver& d = out.driver;
  sym(d.init, "cuInit");
  sym(d.device_get_count, "cuDeviceGetCount");
  sym(d.device_get, "cuDeviceGet");
  sym(d.device_get_attribute, "cuDeviceGetAttribute");
  sym(d.pointer_get_attribute, "cuPointerGetAttribute");
  sym(d.mem_get_address_range, "cuMemGetAddressRange_v2");
  sym(d.mem_get_handle_for_address_range, "cuMemGetHandleForAddressRange", false);
  sym(d.memcpy_htod, "cuMemcpyHtoD_v2");
  sym(d.memcpy_dtoh, "cuMemcpyDtoH_v2");
  sym(d.ctx_get_current, "cuCtxGetCurrent");
  sym(d.ctx_set_current, "cuCtxSetCurrent");
  sym(d.primary_ctx_retain, "cuDevicePrimaryCtxRetain");
  sym(d.get_error_string, "cuGetErrorString");
  sym(d.mem_alloc, "cuMemAlloc_v2");
  sym(d.mem_free, "cuMemFree_v2");
  sym(d.memset_d8, "cuMemsetD8_v2");
  sym(d.device_get_name, "cuDeviceGetName");
  sym(d.ctx_synchronize, "cuCtxSynchronize");
  sym(d.pointer_get_attributes, "cuPointerGetAttributes");
  sym(d.launch_kernel, "cuLaunchKernel");
  sym(d.stream_get_ctx, "cuStreamGetCtx");
  sym(d.stream_create, "cuStreamCreate");
  sym(d.stream_destroy, "cuStreamDestroy_v2");
  sym(d.stream_synchronize, "cuStreamSynchronize");
  sym(d.event_create, "cuEventCreate");
  sym(d.event_destroy, "cuEventDestroy_v2");
  sym(d.event_record, "cuEventRecord");
  sym(d.event_synchronize, "cuEventSynchronize");
  // CUDA 12.8 renamed it (same signature); older drivers have only the first name.
  sym(d.event_elapsed_time, "cuEventElapsedTime_v2", false);
  if (!d.event_elapsed_time) sym(d.event_elapsed_time, "cuEventElapsedTime");
  sym(d.memcpy_dtod_async, "cuMemcpyDtoDAsync_v2");
  sym(d.memcpy_async, "cuMemcpyAsync");
  sym(d.event_query, "cuEventQuery");
  sym(d.stream_wait_event, "cuStreamWaitEvent");
  sym(d.mem_host_register, "cuMemHostRegister_v2");
  sym(d.mem_host_unregister, "cuMemHostUnregister");
  sym(d.mem_host_alloc, "cuMemHostAlloc");
  sym(d.mem_free_host, "cuMemFreeHost");
  sym(d.mem_host_get_device_pointer, "cuMemHostGetDevicePointer_v2");
  sym(d.stream_wait_value32, "cuStreamWaitValue32_v2", false);
  if (!d.stream_wait_value32) sym(d.stream_wait_value32, "cuStreamWaitValue32", false);
  sym(d.library_load_data, "cuLibraryLoadData", false);
  sym(d.library_get_kernel, "cuLibraryGetKernel", false);
  if (!missing.empty()) {
    out.error = fmt::format("libcuda.so.1 lacks {}", missing);
    return out;
  }
  CUresult r = d.init(0);
  if (r != kCudaSuccess) {
    out.error = fmt::format("cuInit failed: {}", cuda_error_text(d, r));
    return out;
  }
  if (d.device_get_count(&d.device_count) != kCudaSuccess || d.device_count == 0) {
    out.error = "the CUDA driver sees no device";
    return out;
  }
  out.ok = true;
  return out;
}

}  // namespace

const CudaDriver* cuda_driver(std::string* why) {
  static Loaded loaded = load();
  if (!loaded.ok) {
    if (why) *why = loaded.error;
    return nullptr;
  }
  return &loaded.driver;
}

std::string cuda_error_text(const CudaDriver& cuda, CUresult r) {
  const char* text = nullptr;
  if (cuda.get_error_string && cuda.get_error_string(r, &text) == kCudaSuccess && text) return fmt::format("{} ({})", text, r);
  return fmt::format("CUDA error {}", r);
}

bool is_device_pointer(const CudaDriver& cuda, const void* ptr) {
  unsigned type = 0;
  if (cuda.pointer_get_attribute(&type, kCuPointerAttributeMemoryType, reinterpret_cast<CUdeviceptr>(ptr)) !=
      kCudaSuccess)
    return false;
  return type == kCuMemoryTypeDevice;
}

bool make_pointer_context_current(const CudaDriver& cuda, const void* ptr) {
  CUcontext ctx = nullptr;
  if (cuda.pointer_get_attribute(&ctx, kCuPointerAttributeContext, reinterpret_cast<CUdeviceptr>(ptr)) !=
          kCudaSuccess ||
      !ctx) {
    // Memory from the stream-ordered or VMM allocators names no context: use the device's
    // primary one.
    int ordinal = -1;
    if (cuda.pointer_get_attribute(&ordinal, kCuPointerAttributeDeviceOrdinal, reinterpret_cast<CUdeviceptr>(ptr)) !=
        kCudaSuccess)
      return false;
    CUdevice dev = 0;
    if (cuda.device_get(&dev, ordinal) != kCudaSuccess || cuda.primary_ctx_retain(&ctx, dev) != kCudaSuccess)
      return false;
  }
  return cuda.ctx_set_current(ctx) == kCudaSuccess;
}

namespace {
const CudaDriver& driver_or_throw() {
  std::string why;
  const CudaDriver* d = cuda_driver(&why);
  if (!d) throw std::runtime_error("CUDA unavailable: " + why);
  return *d;
}
void check(const CudaDriver& d, CUresult r, const char* what) {
  if (r != kCudaSuccess) throw std::runtime_error(fmt::format("{} failed: {}", what, cuda_error_text(d, r)));
}
}  // namespace

bool available() { return cuda_driver() != nullptr; }

std::string unavailable_reason() {
  std::string why;
  return cuda_driver(&why) ? std::string() : why;
}

bool is_device_pointer(const void* p) {
  const CudaDriver* d = p ? cuda_driver() : nullptr;
  return d && is_device_pointer(*d, p);
}

void copy_to_host(void* dst, const void* device_src, size_t bytes) {
  if (!bytes) return;
  const CudaDriver& d = driver_or_throw();
  if (!make_pointer_context_current(d, device_src)) throw std::runtime_error("not a CUDA device pointer");
  check(d, d.memcpy_dtoh(dst, reinterpret_cast<CUdeviceptr>(device_src), bytes), "cuMemcpyDtoH");
}

void copy_to_device(void* device_dst, const void* src, size_t bytes) {
  if (!bytes) return;
  const CudaDriver& d = driver_or_throw();
  if (!make_pointer_context_current(d, device_dst)) throw std::runtime_error("not a CUDA device pointer");
  check(d, d.memcpy_htod(reinterpret_cast<CUdeviceptr>(device_dst), src, bytes), "cuMemcpyHtoD");
}

void* device_alloc(size_t bytes) {
  const CudaDriver& d = driver_or_throw();
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  check(d, d.device_get(&dev, 0), "cuDeviceGet");
  check(d, d.primary_ctx_retain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  check(d, d.ctx_set_current(ctx), "cuCtxSetCurrent");
  CUdeviceptr p = 0;
  check(d, d.mem_alloc(&p, bytes ? bytes : 1), "cuMemAlloc");
  return reinterpret_cast<void*>(p);
}

void device_free(void* p) {
  if (const CudaDriver* d = p ? cuda_driver() : nullptr) d->mem_free(reinterpret_cast<CUdeviceptr>(p));
}

}  // namespace ringlink::cuda
