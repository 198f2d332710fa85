// Everything that differs between the torch versions the backend builds against, in one place.
//
// torch 1.13 (Debian 12): a third-party backend subclasses c10d::ProcessGroup; the object the
// creator function returns *is* the process group.
// torch 2.x (pip torch on the GPU machine): it subclasses c10d::Backend; torch wraps it in a
// ProcessGroup and registers it for the devices given to register_backend. 2.x also added
// virtuals for the coalesced tensor forms (FSDP's allgather_into_tensor_coalesced,
// reduce_scatter_tensor_coalesced) and for sparse allreduce, which 1.13 lacks.
//
// The rest of the backend is written once against BackendBase; a method that exists only in the
// 2.x base is declared with RINGLINK_TORCH2_OVERRIDE, so under 1.13 it is an ordinary member that
// nothing calls. The Python side's one difference (register_backend's `devices` argument) is
// decided from kTorchMajor, exported by the module.
#pragma once

#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#define RINGLINK_TORCH2_OVERRIDE override
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#define RINGLINK_TORCH2_OVERRIDE
#endif

#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

namespace ringlink_torch {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;
inline constexpr int kTorchMinor = TORCH_VERSION_MINOR;

#if TORCH_VERSION_MAJOR >= 2
using BackendBase = c10d::Backend;
#else
using BackendBase = c10d::ProcessGroup;
#endif

}  // namespace ringlink_torch
