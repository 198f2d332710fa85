#include "data/orientation.h"

#include <cstring>

#include "trainer_config.h"

#if defined(YOLO_HAVE_EXIF)
#include <libexif/exif-data.h>
#endif

namespace yolo {

int jpeg_exif_orientation(const std::string& path) {
#if defined(YOLO_HAVE_EXIF)
  ExifData* data = exif_data_new_from_file(path.c_str());
  if (!data) return 1;
  int orientation = 1;
  if (ExifEntry* e = exif_data_get_entry(data, EXIF_TAG_ORIENTATION);
      e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->size >= 2) {
    orientation = exif_get_short(e->data, exif_data_get_byte_order(data));
  }
  exif_data_unref(data);
  return orientation >= 1 && orientation <= 8 ? orientation : 1;
#else
  (void)path;
  return 1;
#endif
}

bool orientation_swaps_axes(int orientation) { return orientation >= 5 && orientation <= 8; }

ImageU8 apply_orientation(const ImageU8& img, int orientation) {
  if (orientation < 2 || orientation > 8) return img;
  const int w = img.w, h = img.h;
  const bool swap = orientation_swaps_axes(orientation);
  ImageU8 out(swap ? h : w, swap ? w : h);
  for (int y = 0; y < out.h; ++y) {
    uint8_t* o = out.row(y);
    for (int x = 0; x < out.w; ++x, o += 3) {
      int sx = x, sy = y;  // the stored pixel that lands at (x, y)
      switch (orientation) {
        case 2: sx = w - 1 - x; break;
        case 3: sx = w - 1 - x, sy = h - 1 - y; break;
        case 4: sy = h - 1 - y; break;
        case 5: sx = y, sy = x; break;
        case 6: sx = y, sy = h - 1 - x; break;
        case 7: sx = w - 1 - y, sy = h - 1 - x; break;
        case 8: sx = w - 1 - y, sy = x; break;
      }
      std::memcpy(o, img.row(sy) + sx * 3, 3);
    }
  }
  return out;
}

}  // namespace yolo
