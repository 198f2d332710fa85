#include "common/cuda_driver.h"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

namespace ringlink::cuda {
namespace {

// The subset of cuda.h used here (stable driver ABI).
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUdeviceptr = unsigned long long;
constexpr int kAttrMemoryType = 2;     // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr int kAttrDeviceOrdinal = 9;  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
constexpr unsigned kMemoryTypeDevice = 2;

struct Driver {
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDeviceGetCount)(int*) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuPointerGetAttribute)(void*, int, CUdeviceptr) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*cuMemcpyDtoH)(void*, CUdeviceptr, size_t) = nullptr;
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void*, size_t) = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*cuMemFree)(CUdeviceptr) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char**) = nullptr;
  bool ok = false;
  std::string why;
  CUcontext contexts[64] = {};
};

template <typename F>
bool load(void* lib, F& fn, const char* name) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

Driver& driver() {
  static Driver d;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      d.why = "libcuda.so.1 not found (no NVIDIA driver)";
      return;
    }
    bool all = load(lib, d.cuInit, "cuInit") && load(lib, d.cuDeviceGetCount, "cuDeviceGetCount") &&
               load(lib, d.cuDeviceGet, "cuDeviceGet") && load(lib, d.cuPointerGetAttribute, "cuPointerGetAttribute") &&
               load(lib, d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain") &&
               load(lib, d.cuCtxSetCurrent, "cuCtxSetCurrent") && load(lib, d.cuMemcpyDtoH, "cuMemcpyDtoH_v2") &&
               load(lib, d.cuMemcpyHtoD, "cuMemcpyHtoD_v2") && load(lib, d.cuMemAlloc, "cuMemAlloc_v2") &&
               load(lib, d.cuMemFree, "cuMemFree_v2") && load(lib, d.cuGetErrorString, "cuGetErrorString");
    if (!all) {
      d.why = "libcuda.so.1 lacks a needed symbol";
      return;
    }
    if (d.cuInit(0) != 0) {
      d.why = "cuInit failed (no usable GPU)";
      return;
    }
    int count = 0;
    if (d.cuDeviceGetCount(&count) != 0 || count == 0) {
      d.why = "no CUDA device";
      return;
    }
    d.ok = true;
  });
  return d;
}

void check(CUresult r, const char* what) {
  if (r == 0) return;
  const char* s = "unknown error";
  if (driver().cuGetErrorString) driver().cuGetErrorString(r, &s);
  throw std::runtime_error(fmt::format("{} failed: {} ({})", what, s, r));
}

// Makes the device that owns `p` current on this thread (its primary context, as the CUDA
// runtime and PyTorch use).
void use_device_of(const void* p) {
  Driver& d = driver();
  int ordinal = 0;
  check(d.cuPointerGetAttribute(&ordinal, kAttrDeviceOrdinal, reinterpret_cast<CUdeviceptr>(p)),
        "cuPointerGetAttribute");
  if (ordinal < 0 || ordinal >= 64) throw std::runtime_error("CUDA device ordinal out of range");
  if (!d.contexts[ordinal]) {
    CUdevice dev = 0;
    check(d.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
    check(d.cuDevicePrimaryCtxRetain(&d.contexts[ordinal], dev), "cuDevicePrimaryCtxRetain");
  }
  check(d.cuCtxSetCurrent(d.contexts[ordinal]), "cuCtxSetCurrent");
}

}  // namespace

bool available() { return driver().ok; }
std::string unavailable_reason() { return driver().ok ? std::string() : driver().why; }

bool is_device_pointer(const void* p) {
  if (!p || !available()) return false;
  unsigned type = 0;
  // Plain host memory is unknown to CUDA: the call fails, and the answer is "host".
  if (driver().cuPointerGetAttribute(&type, kAttrMemoryType, reinterpret_cast<CUdeviceptr>(p)) != 0) return false;
  return type == kMemoryTypeDevice;
}

void copy_to_host(void* dst, const void* device_src, size_t bytes) {
  if (!bytes) return;
  use_device_of(device_src);
  check(driver().cuMemcpyDtoH(dst, reinterpret_cast<CUdeviceptr>(device_src), bytes), "cuMemcpyDtoH");
}

void copy_to_device(void* device_dst, const void* src, size_t bytes) {
  if (!bytes) return;
  use_device_of(device_dst);
  check(driver().cuMemcpyHtoD(reinterpret_cast<CUdeviceptr>(device_dst), src, bytes), "cuMemcpyHtoD");
}

void* device_alloc(size_t bytes) {
  if (!available()) throw std::runtime_error("CUDA unavailable: " + unavailable_reason());
  Driver& d = driver();
  if (!d.contexts[0]) {
    CUdevice dev = 0;
    check(d.cuDeviceGet(&dev, 0), "cuDeviceGet");
    check(d.cuDevicePrimaryCtxRetain(&d.contexts[0], dev), "cuDevicePrimaryCtxRetain");
  }
  check(d.cuCtxSetCurrent(d.contexts[0]), "cuCtxSetCurrent");
  CUdeviceptr p = 0;
  check(d.cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc");
  return reinterpret_cast<void*>(p);
}

void device_free(void* p) {
  if (p && available()) driver().cuMemFree(reinterpret_cast<CUdeviceptr>(p));
}

}  // namespace ringlink::cuda
