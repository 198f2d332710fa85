// The GPU code built into libringlink: the fatbin nvcc made of kernels.cu (cubins for the
// configured architectures and PTX of the newest), embedded as data and handed to the driver
// at run time. Empty when the library was built without CUDA (-Dcuda=disabled, or no nvcc).
#pragma once

#include <span>

namespace ringlink::reduce::cuda {

std::span<const unsigned char> embedded_image();

// The code the image holds, as configured: "sm_80 sm_90 compute_90" (empty without CUDA).
const char* embedded_architectures();

}  // namespace ringlink::reduce::cuda
