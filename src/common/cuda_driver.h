// The few CUDA driver calls the engine needs, loaded with dlopen so one binary runs with and
// without a GPU (and builds without the CUDA toolkit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ringlink::cuda {

// True when libcuda loads and initialises and at least one device exists. Cached.
bool available();
// Why not, when !available().
std::string unavailable_reason();

// Device memory that the CPU cannot read directly. False for host, pinned host and managed
// memory, and whenever CUDA is unavailable.
bool is_device_pointer(const void* p);

// Synchronous copies (the legacy default stream: work already queued there completes first).
// Make the pointer's device current on the calling thread first. Throw std::runtime_error.
void copy_to_host(void* dst, const void* device_src, size_t bytes);
void copy_to_device(void* device_dst, const void* src, size_t bytes);

// For tests and staging buffers.
void* device_alloc(size_t bytes);
void device_free(void* p);

}  // namespace ringlink::cuda
