// Augmentations that combine images or objects: mixup and copy-paste
// (utils/augmentations.py), both applied to mosaics as train.py does.
#pragma once

#include <vector>

#include "data/image.h"
#include "data/perspective.h"
#include "data/sample_rng.h"

namespace yolo {

// img = img * r + img2 * (1 - r), truncated to 8 bits, r ~ Beta(32, 32); the
// boxes of both are kept. Both images have the same size.
void mixup(ImageU8& img, std::vector<PixelBox>& boxes, const ImageU8& img2, const std::vector<PixelBox>& boxes2,
           SampleRng& rng);

// Copy-paste: round(p * n) of the n boxes, picked at random, are mirrored
// left-right (box x1..x2 -> w - x2 .. w - x1) and pasted there from the
// mirrored image, each only if it covers less than 30 % of every box present
// (intersection over that box's area), and then joins the boxes. YOLOv5 v7.0
// pastes polygon segments and so does nothing for box-only labels; here each
// box's rectangle is its segment.
void copy_paste(ImageU8& img, std::vector<PixelBox>& boxes, double p, SampleRng& rng);

}  // namespace yolo
