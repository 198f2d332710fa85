// The decoders behind read_image: stb (JPEG, PNG, BMP), libtiff and libwebp.
// Chosen by the file's first bytes, as OpenCV's imread does, not by its name.
#pragma once

#include <array>
#include <string>

#include "data/image.h"

namespace yolo {

enum class ImageFormat { jpeg, png, bmp, tiff, webp, unknown };

ImageFormat sniff_image_format(const std::string& path);

// Decoded RGB pixels and the header size, as stored (before EXIF orientation).
// Both throw with the path and the library's reason.
ImageU8 decode_image(const std::string& path, ImageFormat format);
std::array<int, 2> stored_image_size(const std::string& path, ImageFormat format);

// Images above this many pixels are refused before any allocation (2^28: a
// 16384 x 16384 photo; YOLOv5 trains at 640).
constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

}  // namespace yolo
