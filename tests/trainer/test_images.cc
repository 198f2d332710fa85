// Image decoding (formats told apart by content), EXIF orientation, the .npy
// disk cache and the three --cache modes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/dataset.h"
#include "data/image.h"
#include "data/image_store.h"
#include "data/npy.h"
#include "data/orientation.h"
#include "scratch_dir.h"
#include "trainer_config.h"

#if defined(YOLO_HAVE_TIFF)
#include <tiffio.h>
#endif
#if defined(YOLO_HAVE_WEBP)
#include <webp/encode.h>
#endif

using namespace yolo;
namespace fs = std::filesystem;

namespace {

ImageU8 pattern(int w, int h) {
  ImageU8 img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.row(y) + x * 3;
      p[0] = static_cast<uint8_t>(x * 255 / w), p[1] = static_cast<uint8_t>(y * 255 / h), p[2] = (x / 8 + y / 8) % 2 ? 200 : 40;
    }
  return img;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

double mean_abs_diff(const ImageU8& a, const ImageU8& b) {
  double s = 0;
  for (size_t i = 0; i < a.px.size(); ++i) s += std::abs(int(a.px[i]) - int(b.px[i]));
  return s / a.px.size();
}

// A JPEG carrying an EXIF APP1 segment with one tag, Orientation = `value`,
// spliced in after SOI. Built byte by byte (not with the library under test):
// "Exif\0\0", a big-endian TIFF header, IFD0 with one SHORT entry 0x0112.
void write_jpeg_with_orientation(const fs::path& path, const ImageU8& img, int value) {
  const fs::path plain = path.string() + ".plain.jpg";
  write_jpg(plain.string(), img, 95);
  const std::string jpg = slurp(plain);
  fs::remove(plain);
  const unsigned char app1[] = {0xFF, 0xE1, 0x00, 34, 'E', 'x', 'i', 'f', 0, 0,           // marker, length, id
                                'M', 'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,             // TIFF header, IFD0 at 8
                                0x00, 0x01,                                               // one entry
                                0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,           // Orientation, SHORT, 1
                                0x00, static_cast<unsigned char>(value), 0x00, 0x00,      // the value
                                0x00, 0x00, 0x00, 0x00};                                  // no next IFD
  std::ofstream out(path, std::ios::binary);
  out.write(jpg.data(), 2);  // SOI
  out.write(reinterpret_cast<const char*>(app1), sizeof(app1));
  out.write(jpg.data() + 2, static_cast<std::streamsize>(jpg.size() - 2));
}

#if defined(YOLO_HAVE_TIFF)
void write_tiff(const fs::path& path, const ImageU8& img) {
  TIFF* t = TIFFOpen(path.c_str(), "w");
  ASSERT_NE(t, nullptr);
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, img.w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, img.h);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
  for (int y = 0; y < img.h; ++y) ASSERT_EQ(TIFFWriteScanline(t, const_cast<uint8_t*>(img.row(y)), y, 0), 1);
  TIFFClose(t);
}
#endif

#if defined(YOLO_HAVE_WEBP)
void write_webp_lossless(const fs::path& path, const ImageU8& img) {
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGB(img.px.data(), img.w, img.h, img.w * 3, &out);
  ASSERT_GT(n, 0u);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(out), static_cast<std::streamsize>(n));
  WebPFree(out);
}
#endif

}  // namespace

TEST(Images, PngJpegTiffWebpDecodeToTheSamePixels) {
  ScratchDir dir("formats");
  const ImageU8 img = pattern(40, 24);
  write_png((dir / "a.png").string(), img);
  EXPECT_EQ(read_image((dir / "a.png").string()).px, img.px);
  write_jpg((dir / "a.jpg").string(), img, 95);
  const ImageU8 jpg = read_image((dir / "a.jpg").string());
  ASSERT_EQ(jpg.w, 40);
  EXPECT_LT(mean_abs_diff(jpg, img), 4.0);  // lossy
#if defined(YOLO_HAVE_TIFF)
  write_tiff(dir / "a.tif", img);
  EXPECT_EQ(read_image((dir / "a.tif").string()).px, img.px);
  EXPECT_EQ(read_image_size((dir / "a.tif").string()), (std::array<int, 2>{40, 24}));
#else
  GTEST_SKIP() << "built without libtiff";
#endif
#if defined(YOLO_HAVE_WEBP)
  write_webp_lossless(dir / "a.webp", img);
  EXPECT_EQ(read_image((dir / "a.webp").string()).px, img.px);
  EXPECT_EQ(read_image_size((dir / "a.webp").string()), (std::array<int, 2>{40, 24}));
#else
  GTEST_SKIP() << "built without libwebp";
#endif
  for (const char* f : {"a.png", "a.jpg"}) EXPECT_EQ(read_image_size((dir / f).string()), (std::array<int, 2>{40, 24}));
}

TEST(Images, FormatComesFromTheContentAndAnythingElseIsAClearError) {
  ScratchDir dir("content");
  write_png((dir / "png-named.jpg").string(), pattern(8, 8));
  EXPECT_EQ(read_image((dir / "png-named.jpg").string()).w, 8);
  std::ofstream(dir / "junk.png") << "GIF89a not what the name says";
  try {
    read_image((dir / "junk.png").string());
    FAIL() << "junk decoded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a JPEG, PNG, BMP, TIFF or WebP file"), std::string::npos) << e.what();
  }
  // YOLOv5 lists dng and pfm among its image formats; here they are refused by name.
  fs::create_directories(dir / "imgs");
  write_png((dir / "imgs/ok.png").string(), pattern(8, 8));
  std::ofstream(dir / "imgs/notes.txt") << "not an image, ignored";
  EXPECT_EQ(list_images({(dir / "imgs").string()}).size(), 1u);
  std::ofstream(dir / "imgs/raw.dng") << "raw";
  try {
    list_images({(dir / "imgs").string()});
    FAIL() << "a .dng was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("raw.dng: .dng images are not supported"), std::string::npos) << e.what();
  }
  EXPECT_THROW(list_images({(dir / "imgs/notes.txt").string() + ".md"}), std::runtime_error);
}

TEST(Orientation, EachExifValueTurnsTheImageUpright) {
  ImageU8 img(3, 2);  // pixel ids 0 1 2 / 3 4 5 in the red channel
  for (int i = 0; i < 6; ++i) img.px[i * 3] = static_cast<uint8_t>(i * 40);
  auto ids = [](const ImageU8& m) {
    std::vector<std::vector<int>> rows(m.h);
    for (int y = 0; y < m.h; ++y)
      for (int x = 0; x < m.w; ++x) rows[y].push_back(m.row(y)[x * 3] / 40);
    return rows;
  };
  using R = std::vector<std::vector<int>>;
  EXPECT_EQ(ids(apply_orientation(img, 1)), (R{{0, 1, 2}, {3, 4, 5}}));
  EXPECT_EQ(ids(apply_orientation(img, 2)), (R{{2, 1, 0}, {5, 4, 3}}));        // mirror
  EXPECT_EQ(ids(apply_orientation(img, 3)), (R{{5, 4, 3}, {2, 1, 0}}));        // 180
  EXPECT_EQ(ids(apply_orientation(img, 4)), (R{{3, 4, 5}, {0, 1, 2}}));        // flip
  EXPECT_EQ(ids(apply_orientation(img, 5)), (R{{0, 3}, {1, 4}, {2, 5}}));      // transpose
  EXPECT_EQ(ids(apply_orientation(img, 6)), (R{{3, 0}, {4, 1}, {5, 2}}));      // 90 clockwise
  EXPECT_EQ(ids(apply_orientation(img, 7)), (R{{5, 2}, {4, 1}, {3, 0}}));      // transverse
  EXPECT_EQ(ids(apply_orientation(img, 8)), (R{{2, 5}, {1, 4}, {0, 3}}));      // 90 counter-clockwise
  EXPECT_EQ(ids(apply_orientation(img, 0)), ids(img));
}

TEST(Orientation, CameraJpegWithTheTagLoadsUpright) {
#if !defined(YOLO_HAVE_EXIF)
  GTEST_SKIP() << "built without libexif";
#endif
  ScratchDir dir("exif");
  ImageU8 img(64, 32);  // left half red, right half blue
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 64; ++x) img.row(y)[x * 3 + (x < 32 ? 0 : 2)] = 255;
  const std::string path = (dir / "camera.jpg").string();
  write_jpeg_with_orientation(path, img, 6);  // "rotate 90 clockwise to view"
  EXPECT_EQ(jpeg_exif_orientation(path), 6);
  EXPECT_EQ(read_image_size(path), (std::array<int, 2>{32, 64}));
  const ImageU8 up = read_image(path);
  ASSERT_EQ(up.w, 32);
  ASSERT_EQ(up.h, 64);
  // Turned clockwise, the left (red) half is on top and the right (blue) below.
  EXPECT_GT(up.row(8)[16 * 3 + 0], 200);
  EXPECT_LT(up.row(8)[16 * 3 + 2], 60);
  EXPECT_GT(up.row(56)[16 * 3 + 2], 200);
  EXPECT_LT(up.row(56)[16 * 3 + 0], 60);
  // Without the tag the same pixels stay as stored.
  write_jpg((dir / "plain.jpg").string(), img, 95);
  EXPECT_EQ(jpeg_exif_orientation((dir / "plain.jpg").string()), 1);
  EXPECT_EQ(read_image((dir / "plain.jpg").string()).w, 64);
}

TEST(Npy, RoundTripReadableLayoutAndDamageRefused) {
  ScratchDir dir("npy");
  const ImageU8 img = pattern(17, 5);
  const std::string path = (dir / "x.npy").string();
  write_npy(path, img);
  const std::string bytes = slurp(path);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  const size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);  // the format's alignment rule
  EXPECT_NE(bytes.find("'shape': (5, 17, 3)"), std::string::npos);
  EXPECT_EQ(bytes.size(), 10 + header_len + img.px.size());
  const ImageU8 back = read_npy(path);
  EXPECT_EQ(back.w, 17);
  EXPECT_EQ(back.px, img.px);
  std::ofstream(dir / "short.npy", std::ios::binary) << bytes.substr(0, bytes.size() - 1);
  EXPECT_THROW(read_npy((dir / "short.npy").string()), std::runtime_error);
  std::string grown = bytes;
  grown.replace(grown.find("(5, 17, 3)"), 10, "(9, 17, 3)");
  std::ofstream(dir / "grown.npy", std::ios::binary) << grown;
  EXPECT_THROW(read_npy((dir / "grown.npy").string()), std::runtime_error);
  std::ofstream(dir / "text.npy") << "hello";
  EXPECT_THROW(read_npy((dir / "text.npy").string()), std::runtime_error);
}

TEST(ImageStore, ResizeAsLoadImage) {
  EXPECT_EQ(ImageStore::resized_size(1000, 750, 640), (std::array<int, 2>{640, 480}));
  EXPECT_EQ(ImageStore::resized_size(333, 500, 640), (std::array<int, 2>{427, 640}));  // ceil(333 * 1.28)
  EXPECT_EQ(ImageStore::resized_size(640, 100, 640), (std::array<int, 2>{640, 100}));
  EXPECT_EQ(parse_cache_mode(""), CacheMode::none);
  EXPECT_EQ(parse_cache_mode("disk"), CacheMode::disk);
  EXPECT_THROW(parse_cache_mode("gpu"), std::runtime_error);
}

TEST(ImageStore, NoneRamAndDiskGiveTheSameImages) {
  ScratchDir dir("cache");
  fs::create_directories(dir / "images");
  for (int i = 0; i < 3; ++i) write_png((dir / "images" / ("im" + std::to_string(i) + ".png")).string(), pattern(50 + 10 * i, 30));
  const std::vector<std::string> src = {(dir / "images").string()};
  auto build = [&](CacheMode m) {
    DatasetOptions o;
    o.img_size = 32;
    o.threads = 2;
    o.cache = m;
    return std::make_unique<Dataset>(src, 1, o);
  };
  auto none = build(CacheMode::none);
  auto ram = build(CacheMode::ram);
  EXPECT_FALSE(fs::exists(dir / "images/im0.png.npy"));
  auto disk = build(CacheMode::disk);
  EXPECT_EQ(none->cache(), CacheMode::none);
  EXPECT_EQ(ram->cache(), CacheMode::ram);
  EXPECT_EQ(disk->cache(), CacheMode::disk);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(fs::exists(dir / "images" / ("im" + std::to_string(i) + ".png.npy")));
    auto a = none->image(i), b = ram->image(i), c = disk->image(i);
    EXPECT_EQ(a->w, 32);
    EXPECT_EQ(a->px, b->px);
    EXPECT_EQ(a->px, c->px);
    EXPECT_EQ(none->native_size(i)[0], 50 + 10 * static_cast<int>(i));
  }
  EXPECT_EQ(ram->image(0).get(), ram->image(0).get());  // held, not decoded again
}

TEST(ImageStore, RamCheckFallsBackWhenTheCacheWouldNotFit) {
  if (available_memory_bytes() == 0) GTEST_SKIP() << "no MemAvailable in /proc/meminfo";
  ScratchDir dir("ramcheck");
  fs::create_directories(dir / "images");
  write_png((dir / "images/a.png").string(), pattern(64, 64));
  DatasetOptions o;
  o.img_size = 64;
  o.cache = CacheMode::ram;
  // 12 KB per process; on a host with this many processes the cache cannot fit.
  o.processes_per_host = 1 << 30;
  Dataset ds({(dir / "images").string()}, 1, o);
  EXPECT_EQ(ds.cache(), CacheMode::none);
  EXPECT_EQ(ds.image(0)->w, 64);  // and the images still load
}
