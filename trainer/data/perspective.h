// YOLOv5's random_perspective (utils/augmentations.py): one 3x3 matrix
// M = T S R P C (centre, perspective, rotation and scale, shear, translation)
// warps the image and the boxes alike.
#pragma once

#include <array>
#include <vector>

#include "data/image.h"
#include "data/sample_rng.h"
#include "train/hyp.h"

namespace yolo {

// Pixel boxes: class, x1, y1, x2, y2.
using PixelBox = std::array<float, 5>;

using Mat3 = std::array<double, 9>;  // row-major

struct PerspectiveWarp {
  Mat3 M{1, 0, 0, 0, 1, 0, 0, 0, 1};
  double scale = 1.0;          // the draw's scale, for box_candidates
  int width = 0, height = 0;   // output size
  bool projective = false;     // perspective != 0: warpPerspective, boxes divided by w
};

// Draws the matrix for an in_w x in_h input. The output is the input grown by
// `border` on every side (negative for mosaics: the centre s x s of 2s x 2s).
PerspectiveWarp draw_perspective(int in_w, int in_h, const Hyp& hyp, int border, SampleRng& rng);

// Bilinear warp with a constant 114 border, as cv2.warpAffine / warpPerspective.
ImageU8 warp_image(const ImageU8& img, const PerspectiveWarp& warp);

// Each box's four corners through M, the enclosing box clipped to the output,
// then box_candidates: wider and taller than 2 px, more than 10 % of the
// scaled original area, aspect ratio below 100.
std::vector<PixelBox> warp_boxes(const std::vector<PixelBox>& boxes, const PerspectiveWarp& warp);

// The three above, in train.py's order.
ImageU8 random_perspective(const ImageU8& img, std::vector<PixelBox>* boxes, const Hyp& hyp, int border,
                           SampleRng& rng);

}  // namespace yolo
