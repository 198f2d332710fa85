// EXIF orientation: camera JPEGs store pixels as the sensor saw them and a
// tag saying how to turn them upright. OpenCV's imread (YOLOv5) applies it,
// and labels are drawn on the upright image, so the loader applies it too.
#pragma once

#include <string>

#include "data/image.h"

namespace yolo {

// The EXIF Orientation tag (1..8) of a JPEG file, read with libexif; 1 when
// the file has none, or when the trainer was built without libexif.
int jpeg_exif_orientation(const std::string& path);

// True for the orientations that swap width and height (5..8).
bool orientation_swaps_axes(int orientation);

// The upright image for a stored image and its EXIF orientation:
// 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
// 7 transverse, 8 rotate 90 counter-clockwise; anything else unchanged.
ImageU8 apply_orientation(const ImageU8& img, int orientation);

}  // namespace yolo
