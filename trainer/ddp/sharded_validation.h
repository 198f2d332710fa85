// Sharded validation: each rank validates its share of the images, then every rank receives
// all per-image statistics and puts them in dataset order, so the mAP every rank computes is
// the one a single process computes over the whole set.
#pragma once

#include <torch/torch.h>

#include "data/dataset.h"
#include "ddp/process_group.h"
#include "val/metrics.h"

namespace yolo::ddp {

// Replaces `stats` (this rank's images) by every rank's, ordered by image key (dataset
// index). Sizes announced by other ranks are checked against the dataset and `max_det`.
void gather_detection_stats(ProcessGroup& group, DetectionStats& stats, const Dataset& ds, int max_det);

}  // namespace yolo::ddp
