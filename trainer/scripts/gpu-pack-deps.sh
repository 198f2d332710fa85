#!/usr/bin/env bash
# Packs the trainer's non-Torch build dependencies (fmt, CLI11, yaml-cpp, stb,
# and for images libwebp and libexif: headers and shared libraries) from this
# Debian machine into build-deps/, for a GPU machine whose image lacks them.
# libtiff is left out: it needs half a dozen more libraries (jpeg, deflate,
# lerc, jbig, zstd, lzma); a GPU build without it refuses TIFF images by name.
# Run from the repository root:
#   bash trainer/scripts/gpu-pack-deps.sh
# then carry build-deps/ along (it is ignored by git through /build*/).
set -euo pipefail
dest=${1:-build-deps}
rm -rf "$dest"
mkdir -p "$dest/include" "$dest/lib"
for d in fmt CLI yaml-cpp; do
  [ -d "/usr/include/$d" ] || { echo "gpu-pack-deps: /usr/include/$d missing (apt-get install libfmt-dev libcli11-dev libyaml-cpp-dev)" >&2; exit 1; }
  cp -r "/usr/include/$d" "$dest/include/"
done
for d in webp libexif; do
  [ -d "/usr/include/$d" ] || { echo "gpu-pack-deps: /usr/include/$d missing (apt-get install libwebp-dev libexif-dev)" >&2; exit 1; }
  cp -r "/usr/include/$d" "$dest/include/"
done
[ -f /usr/include/stb/stb_image.h ] || { echo "gpu-pack-deps: stb headers missing (apt-get install libstb-dev)" >&2; exit 1; }
cp /usr/include/stb/stb_image.h /usr/include/stb/stb_image_write.h /usr/include/stb/stb_image_resize.h \
   /usr/include/stb/stb_easy_font.h "$dest/include/"
libdir=$(dirname "$(g++ -print-file-name=libyaml-cpp.so)")
for l in yaml-cpp fmt stb webp exif; do
  real=$(readlink -f "$libdir/lib$l.so")
  cp "$real" "$dest/lib/"
  soname=$(objdump -p "$real" | awk '/SONAME/ {print $2}')
  # Plain copies, no symlinks: the folder may travel through tools that do
  # not keep links.
  cp "$real" "$dest/lib/$soname"
  cp "$real" "$dest/lib/lib$l.so"
done
du -sh "$dest"
echo "gpu-pack-deps: wrote $dest (carry it to the GPU machine with the repository)"
