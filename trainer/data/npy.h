// Decoded images as NumPy .npy files (uint8, shape (h, w, 3), RGB): the
// --cache disk format, readable with numpy.load.
#pragma once

#include <string>

#include "data/image.h"

namespace yolo {

// Written to a temporary name and renamed, so a reader never sees half a file.
void write_npy(const std::string& path, const ImageU8& img);

// Reads a file write_npy wrote. The header must describe exactly that layout
// and the file must hold exactly those bytes, checked before allocating.
ImageU8 read_npy(const std::string& path);

}  // namespace yolo
