// The CUDA driver calls ringlink makes (staging device buffers, GPUDirect registration, the GPU
// reduction kernels), loaded with dlopen("libcuda.so.1") so that nothing in ringlink links CUDA:
// a host without a GPU driver simply has no CUDA memory. Values below match cuda.h (CUDA 11.7
// and later; the kernel library calls need 12.0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ringlink::cuda {

using CUresult = int;
using CUdeviceptr = unsigned long long;
using CUdevice = int;
using CUcontext = void*;
using CUstream = void*;    // cuda.h's CUstream (and cudart's cudaStream_t) convert to it
using CUevent = void*;
using CUfunction = void*;
using CUlibrary = void*;
using CUkernel = void*;    // usable as a CUfunction in launch_kernel

inline constexpr CUresult kCudaSuccess = 0;
inline constexpr int kCuPointerAttributeContext = 1;
inline constexpr int kCuPointerAttributeMemoryType = 2;
inline constexpr int kCuPointerAttributeBufferId = 7;
inline constexpr int kCuPointerAttributeIsManaged = 8;
inline constexpr int kCuPointerAttributeDeviceOrdinal = 9;
inline constexpr int kCuPointerAttributeRangeStartAddr = 11;
inline constexpr int kCuPointerAttributeRangeSize = 12;
inline constexpr unsigned kCuMemoryTypeDevice = 2;
inline constexpr int kCuDeviceAttributeMultiprocessorCount = 16;
inline constexpr int kCuDeviceAttributeComputeCapabilityMajor = 75;
inline constexpr int kCuDeviceAttributeComputeCapabilityMinor = 76;
inline constexpr int kCuDeviceAttributeDmaBufSupported = 124;
inline constexpr int kCuMemRangeHandleTypeDmaBufFd = 1;
inline constexpr CUresult kCudaErrorInvalidContext = 201;
inline constexpr unsigned kCuStreamNonBlocking = 1;
inline constexpr unsigned kCuEventDefault = 0;
inline constexpr unsigned kCuEventDisableTiming = 2;
inline constexpr CUresult kCudaErrorNotReady = 600;
inline constexpr unsigned kCuMemHostAllocPortable = 1;
inline constexpr unsigned kCuMemHostAllocDeviceMap = 2;
inline constexpr unsigned kCuMemHostRegisterPortable = 1;
inline constexpr unsigned kCuStreamWaitValueGeq = 0;
// Stream handles with a meaning of their own (cuda.h's CU_STREAM_LEGACY, CU_STREAM_PER_THREAD).
inline const CUstream kCuStreamLegacy = reinterpret_cast<CUstream>(0x1);
inline const CUstream kCuStreamPerThread = reinterpret_cast<CUstream>(0x2);

struct CudaDriver {
  CUresult (*init)(unsigned flags) = nullptr;
  CUresult (*device_get_count)(int* count) = nullptr;
  CUresult (*device_get)(CUdevice* device, int ordinal) = nullptr;
  CUresult (*device_get_attribute)(int* value, int attribute, CUdevice device) = nullptr;
  CUresult (*pointer_get_attribute)(void* data, int attribute, CUdeviceptr ptr) = nullptr;
  CUresult (*mem_get_address_range)(CUdeviceptr* base, size_t* size, CUdeviceptr ptr) = nullptr;
  // Optional (CUDA 11.7+): null on older drivers, which then have no dma-buf path.
  CUresult (*mem_get_handle_for_address_range)(void* handle, CUdeviceptr ptr, size_t size, int type,
                                               unsigned long long flags) = nullptr;
  CUresult (*memcpy_htod)(CUdeviceptr dst, const void* src, size_t bytes) = nullptr;
  CUresult (*memcpy_dtoh)(void* dst, CUdeviceptr src, size_t bytes) = nullptr;
  CUresult (*ctx_get_current)(CUcontext* ctx) = nullptr;
  CUresult (*ctx_set_current)(CUcontext ctx) = nullptr;
  CUresult (*primary_ctx_retain)(CUcontext* ctx, CUdevice device) = nullptr;
  CUresult (*get_error_string)(CUresult error, const char** text) = nullptr;
  // Used by tests and the benchmark to make device buffers.
  CUresult (*mem_alloc)(CUdeviceptr* ptr, size_t bytes) = nullptr;
  CUresult (*mem_free)(CUdeviceptr ptr) = nullptr;
  CUresult (*memset_d8)(CUdeviceptr ptr, unsigned char value, size_t bytes) = nullptr;
  CUresult (*device_get_name)(char* name, int length, CUdevice device) = nullptr;
  CUresult (*ctx_synchronize)() = nullptr;

  // The reduction kernels (src/reduce/cuda): pointer checks, launch, and the streams and events
  // the tests and the benchmark order and time them with.
  CUresult (*pointer_get_attributes)(unsigned count, int* attributes, void** data, CUdeviceptr ptr) = nullptr;
  CUresult (*launch_kernel)(CUfunction f, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,
                            unsigned block_y, unsigned block_z, unsigned shared_bytes, CUstream stream,
                            void** params, void** extra) = nullptr;
  CUresult (*stream_get_ctx)(CUstream stream, CUcontext* ctx) = nullptr;
  CUresult (*stream_create)(CUstream* stream, unsigned flags) = nullptr;
  CUresult (*stream_destroy)(CUstream stream) = nullptr;
  CUresult (*stream_synchronize)(CUstream stream) = nullptr;
  CUresult (*event_create)(CUevent* event, unsigned flags) = nullptr;
  CUresult (*event_destroy)(CUevent event) = nullptr;
  CUresult (*event_record)(CUevent event, CUstream stream) = nullptr;
  CUresult (*event_synchronize)(CUevent event) = nullptr;
  CUresult (*event_elapsed_time)(float* ms, CUevent start, CUevent end) = nullptr;
  CUresult (*memcpy_dtod_async)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) = nullptr;
  // Optional (CUDA 12.0+): context-independent loading of the kernels' fatbin. Null on older
  // drivers, which then have no GPU reductions.
  CUresult (*library_load_data)(CUlibrary* library, const void* code, void* jit_options, void** jit_values,
                                unsigned jit_count, void* library_options, void** library_values,
                                unsigned library_count) = nullptr;
  CUresult (*library_get_kernel)(CUkernel* kernel, CUlibrary library, const char* name) = nullptr;

  // The staging layer's asynchronous pipeline and the stream-ordered calls.
  // Any direction (unified addressing tells host from device memory).
  CUresult (*memcpy_async)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*event_query)(CUevent event) = nullptr;
  CUresult (*stream_wait_event)(CUstream stream, CUevent event, unsigned flags) = nullptr;
  CUresult (*mem_host_register)(void* p, size_t bytes, unsigned flags) = nullptr;
  CUresult (*mem_host_unregister)(void* p) = nullptr;
  CUresult (*mem_host_alloc)(void** p, size_t bytes, unsigned flags) = nullptr;
  CUresult (*mem_free_host)(void* p) = nullptr;
  CUresult (*mem_host_get_device_pointer)(CUdeviceptr* dptr, void* p, unsigned flags) = nullptr;
  // Optional: null where the driver lacks stream memory operations.
  CUresult (*stream_wait_value32)(CUstream stream, CUdeviceptr addr, uint32_t value, unsigned flags) = nullptr;

  int device_count = 0;
};

// Loads the driver and initialises it once per process. Null (with the reason) when there is no
// driver library, it fails to initialise, or it sees no device.
const CudaDriver* cuda_driver(std::string* why = nullptr);

std::string cuda_error_text(const CudaDriver& cuda, CUresult r);

// True when `ptr` is device memory known to the driver (host or unknown pointers: false).
bool is_device_pointer(const CudaDriver& cuda, const void* ptr);

// Makes the context that owns `ptr` current on the calling thread (for driver copies made from
// a thread that did not allocate it). Returns false when the pointer is unknown.
bool make_pointer_context_current(const CudaDriver& cuda, const void* ptr);

// ---- conveniences over the table (all false / throwing std::runtime_error without CUDA) ----

// True when the driver loads, initialises and sees a device. Cached.
bool available();
// Why not, when !available().
std::string unavailable_reason();

// Device memory the CPU cannot read directly (false for host, pinned host and managed memory).
bool is_device_pointer(const void* p);

// Synchronous copies on the legacy default stream (work already queued there completes first),
// made current on the pointer's device.
void copy_to_host(void* dst, const void* device_src, size_t bytes);
void copy_to_device(void* device_dst, const void* src, size_t bytes);

// Device memory on device 0 (tests and staging).
void* device_alloc(size_t bytes);
void device_free(void* p);

}  // namespace ringlink::cuda
