// Synchronised BatchNorm (--sync-bn). In training every rank normalises with the mean and
// variance of the global batch (each rank's per-channel statistics, gathered and combined in
// forward), and the backward pass sums over ranks the two per-channel reductions the input
// gradient needs. Weight and bias gradients stay per rank: the gradient reducer sums them.
// Running statistics get the global batch's, so they are identical on every rank.
#pragma once

#include <memory>

#include "ddp/process_group.h"
#include "model/yolo.h"

namespace yolo::ddp {

// For YoloModelImpl::set_batch_norm_forward. A null group (one process) runs the same
// arithmetic without communication.
BatchNormForward sync_batch_norm(std::shared_ptr<ProcessGroup> group);

}  // namespace yolo::ddp
