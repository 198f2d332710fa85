// Augmentation geometry: the mosaic layout, random_perspective (a known box
// goes where the matrix says, affine and projective), copy-paste and mixup.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/augment.h"
#include "scratch_dir.h"

using namespace yolo;
namespace fs = std::filesystem;

namespace {

const uint8_t kColours[4][3] = {{250, 20, 20}, {20, 250, 20}, {20, 20, 250}, {250, 250, 20}};

// Four 64 x 48 solid images, each labelled with its centred half-size box;
// image 1 also has a box at its right edge.
struct FourTiles : ScratchDir {
  std::unique_ptr<Dataset> ds;
  FourTiles() : ScratchDir("tiles") {
    fs::create_directories(path() / "images");
    fs::create_directories(path() / "labels");
    for (int i = 0; i < 4; ++i) {
      ImageU8 img(64, 48);
      for (size_t p = 0; p < img.px.size(); ++p) img.px[p] = kColours[i][p % 3];
      write_png((path() / "images" / fmt::format("t{}.png", i)).string(), img);
      std::ofstream lab(path() / "labels" / fmt::format("t{}.txt", i));
      lab << i << " 0.5 0.5 0.5 0.5\n";
      if (i == 1) lab << "1 0.95 0.5 0.1 0.5\n";
    }
    DatasetOptions o;
    o.img_size = 64;  // long side already 64: no resize
    o.cache = CacheMode::ram;
    ds = std::make_unique<Dataset>(std::vector<std::string>{(path() / "images").string()}, 4, o);
  }
};

bool is_colour(const ImageU8& img, int x, int y, const uint8_t* c) {
  const uint8_t* p = img.row(y) + x * 3;
  return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}

void expect_box(const PixelBox& b, float cls, float x1, float y1, float x2, float y2, const char* what) {
  EXPECT_FLOAT_EQ(b[0], cls) << what;
  EXPECT_NEAR(b[1], x1, 1e-4) << what;
  EXPECT_NEAR(b[2], y1, 1e-4) << what;
  EXPECT_NEAR(b[3], x2, 1e-4) << what;
  EXPECT_NEAR(b[4], y2, 1e-4) << what;
}

Hyp no_augmentation() {
  Hyp h;
  h.degrees = h.translate = h.scale = h.shear = h.perspective = 0;
  h.copy_paste = h.mixup = 0;
  return h;
}

}  // namespace

TEST(Mosaic, TilesAndBoxesMeetAtTheCentre) {
  FourTiles t;
  std::vector<PixelBox> boxes;
  // s = 64, centre (70, 60): tile offsets (padw, padh) are (6, 12), (70, 12), (6, 60), (70, 60).
  const ImageU8 c = mosaic_canvas(*t.ds, {0, 1, 2, 3}, 64, 70, 60, &boxes);
  ASSERT_EQ(c.w, 128);
  ASSERT_EQ(c.h, 128);
  const uint8_t pad[3] = {114, 114, 114};
  EXPECT_TRUE(is_colour(c, 3, 3, pad));      // left of tile 0
  EXPECT_TRUE(is_colour(c, 30, 30, kColours[0]));
  EXPECT_TRUE(is_colour(c, 69, 59, kColours[0]));
  EXPECT_TRUE(is_colour(c, 70, 59, kColours[1]));
  EXPECT_TRUE(is_colour(c, 127, 30, kColours[1]));  // tile 1 cut at the canvas edge
  EXPECT_TRUE(is_colour(c, 30, 80, kColours[2]));
  EXPECT_TRUE(is_colour(c, 100, 80, kColours[3]));
  EXPECT_TRUE(is_colour(c, 100, 120, pad));  // below the bottom tiles (60 + 48)
  ASSERT_EQ(boxes.size(), 5u);
  // Centred box of a 64 x 48 image: (16, 12)-(48, 36), shifted by the tile offset.
  expect_box(boxes[0], 0, 22, 24, 54, 48, "tile 0");
  expect_box(boxes[1], 1, 86, 24, 118, 48, "tile 1");
  expect_box(boxes[2], 1, 127.6f, 24, 128, 48, "tile 1 edge box, clipped to the canvas");
  expect_box(boxes[3], 2, 22, 72, 54, 96, "tile 2");
  expect_box(boxes[4], 3, 86, 72, 118, 96, "tile 3");
}

TEST(Mosaic, UnaugmentedPerspectiveCropsTheCentre) {
  FourTiles t;
  std::vector<PixelBox> boxes;
  const ImageU8 canvas = mosaic_canvas(*t.ds, {0, 1, 2, 3}, 64, 70, 60, &boxes);
  SampleRng rng(1);
  // border -s/2: the output is the 64 x 64 centre, M a shift by -32.
  const ImageU8 out = random_perspective(canvas, &boxes, no_augmentation(), -32, rng);
  ASSERT_EQ(out.w, 64);
  for (int y = 0; y < 64; y += 7)
    for (int x = 0; x < 64; x += 5) EXPECT_TRUE(is_colour(out, x, y, canvas.row(y + 32) + (x + 32) * 3)) << x << "," << y;
  // Every box moved by (-32, -32) and clipped to [0, 64]; the sliver at x 127.6 is gone.
  ASSERT_EQ(boxes.size(), 4u);
  expect_box(boxes[0], 0, 0, 0, 22, 16, "tile 0");
  expect_box(boxes[1], 1, 54, 0, 64, 16, "tile 1");
  expect_box(boxes[2], 2, 0, 40, 22, 64, "tile 2");
  expect_box(boxes[3], 3, 54, 40, 64, 64, "tile 3");
}

namespace {

// A 100 x 80 grey image with one red rectangle, its box (30, 20)-(50, 40).
ImageU8 one_rectangle() {
  ImageU8 img(100, 80, 60);
  for (int y = 20; y < 40; ++y)
    for (int x = 30; x < 50; ++x) img.row(y)[x * 3] = 250, img.row(y)[x * 3 + 1] = 10, img.row(y)[x * 3 + 2] = 10;
  return img;
}

std::array<double, 2> apply(const Mat3& M, double x, double y) {
  const double w = M[6] * x + M[7] * y + M[8];
  return {(M[0] * x + M[1] * y + M[2]) / w, (M[3] * x + M[4] * y + M[5]) / w};
}

void check_box_follows_matrix(const Hyp& hyp, uint64_t seed, bool projective) {
  SampleRng draw(seed), run(seed);  // same stream: the matrix random_perspective will use
  const PerspectiveWarp warp = draw_perspective(100, 80, hyp, 0, draw);
  EXPECT_EQ(warp.projective, projective);
  if (!projective) {
    EXPECT_EQ((std::array<double, 3>{warp.M[6], warp.M[7], warp.M[8]}), (std::array<double, 3>{0, 0, 1}));
  }
  std::vector<PixelBox> boxes = {{0, 30, 20, 50, 40}};
  const ImageU8 out = random_perspective(one_rectangle(), &boxes, hyp, 0, run);
  ASSERT_EQ(boxes.size(), 1u);
  double x1 = 1e9, y1 = 1e9, x2 = -1e9, y2 = -1e9;
  for (auto [x, y] : {std::pair{30.0, 20.0}, {50.0, 20.0}, {30.0, 40.0}, {50.0, 40.0}}) {
    const auto p = apply(warp.M, x, y);
    x1 = std::min(x1, p[0]), x2 = std::max(x2, p[0]), y1 = std::min(y1, p[1]), y2 = std::max(y2, p[1]);
  }
  ASSERT_TRUE(x1 > 0 && y1 > 0 && x2 < 100 && y2 < 80) << "pick a seed that keeps the box inside";
  expect_box(boxes[0], 0, x1, y1, x2, y2, "warped box");
  // The rectangle's pixels went there too: its centre, and a point inside a corner.
  for (auto [x, y] : {std::pair{40.0, 30.0}, {33.0, 23.0}, {47.0, 37.0}}) {
    const auto p = apply(warp.M, x, y);
    const uint8_t* px = out.row(static_cast<int>(std::lround(p[1]))) + std::lround(p[0]) * 3;
    EXPECT_GT(px[0], 200) << x << "," << y;
    EXPECT_LT(px[1], 60) << x << "," << y;
  }
  // And a background point stays background.
  const auto bg = apply(warp.M, 10, 60);
  if (bg[0] >= 0 && bg[1] >= 0 && bg[0] < 99 && bg[1] < 79) {
    EXPECT_EQ(out.row(static_cast<int>(std::lround(bg[1])))[std::lround(bg[0]) * 3], 60);
  }
}

}  // namespace

TEST(RandomPerspective, AffineBoxGoesWhereTheMatrixSays) {
  Hyp h = no_augmentation();
  h.degrees = 20, h.scale = 0.3, h.shear = 5, h.translate = 0.1;
  check_box_follows_matrix(h, 5, false);
}

TEST(RandomPerspective, ProjectiveBoxGoesWhereTheMatrixSays) {
  Hyp h = no_augmentation();
  h.degrees = 10, h.scale = 0.2, h.translate = 0.05, h.perspective = 0.001;
  check_box_follows_matrix(h, 9, true);
}

TEST(RandomPerspective, MatrixIsTranslationShearRotationPerspectiveCentre) {
  // Only translation: M = T C, so a point moves by (tx - w/2, ty - h/2) with tx in w (0.5 +- translate).
  Hyp h = no_augmentation();
  h.translate = 0.1;
  SampleRng rng(3);
  const auto w = draw_perspective(100, 80, h, 0, rng);
  EXPECT_DOUBLE_EQ(w.M[0], 1.0);
  EXPECT_DOUBLE_EQ(w.M[4], 1.0);
  EXPECT_GE(w.M[2], 100 * 0.4 - 50);
  EXPECT_LE(w.M[2], 100 * 0.6 - 50);
  // Only scale: M = T R C with s in [1 - scale, 1 + scale] on the diagonal, centre kept at 0.5.
  h = no_augmentation();
  h.scale = 0.5;
  const auto s = draw_perspective(100, 80, h, 0, rng);
  EXPECT_DOUBLE_EQ(s.M[0], s.scale);
  EXPECT_NEAR(apply(s.M, 50, 40)[0], 50, 1e-9);
  EXPECT_NEAR(apply(s.M, 50, 40)[1], 40, 1e-9);
  // A mosaic border halves the output.
  EXPECT_EQ(draw_perspective(128, 128, h, -32, rng).width, 64);
}

TEST(CopyPaste, MirrorsABoxAndItsPixelsWhenTheSpotIsFree) {
  ImageU8 img(60, 40, 100);
  for (int y = 10; y <= 30; ++y)
    for (int x = 5; x <= 15; ++x) img.row(y)[x * 3] = 250;
  std::vector<PixelBox> boxes = {{2, 5, 10, 15, 30}};
  SampleRng rng(1);
  copy_paste(img, boxes, 1.0, rng);
  ASSERT_EQ(boxes.size(), 2u);
  expect_box(boxes[1], 2, 45, 10, 55, 30, "mirrored box (w - x2, y1, w - x1, y2)");
  EXPECT_EQ(img.row(20)[50 * 3], 250);  // pasted pixels (mirrored copies of x 9)
  EXPECT_EQ(img.row(20)[10 * 3], 250);  // the original stays
  EXPECT_EQ(img.row(20)[30 * 3], 100);  // the rest untouched
  EXPECT_EQ(img.row(5)[50 * 3], 100);

  // Where the mirrored box would cover 30 % or more of a box already there, nothing is pasted.
  ImageU8 busy(60, 40, 100);
  std::vector<PixelBox> two = {{0, 5, 10, 15, 30}, {1, 44, 10, 56, 30}};
  copy_paste(busy, two, 1.0, rng);
  EXPECT_EQ(two.size(), 2u);
  EXPECT_EQ(busy.px, ImageU8(60, 40, 100).px);
  // p = 0 leaves everything, and draws nothing.
  SampleRng a(4), b(4);
  copy_paste(img, boxes, 0.0, a);
  EXPECT_EQ(boxes.size(), 2u);
  EXPECT_EQ(a.uniform(), b.uniform());
}

TEST(Mixup, BlendsWithABetaRatioAndKeepsBothLabelSets) {
  ImageU8 a(8, 4, 100), b(8, 4, 200);
  std::vector<PixelBox> la = {{0, 1, 1, 3, 3}}, lb = {{1, 4, 0, 7, 2}, {2, 0, 0, 1, 1}};
  SampleRng rng(11), same(11);
  const double r = same.beta(32.0, 32.0);
  EXPECT_GT(r, 0.25);
  EXPECT_LT(r, 0.75);
  mixup(a, la, b, lb, rng);
  const uint8_t expected = static_cast<uint8_t>(100 * r + 200 * (1 - r));
  for (uint8_t v : a.px) ASSERT_EQ(v, expected);
  ASSERT_EQ(la.size(), 3u);
  EXPECT_FLOAT_EQ(la[1][0], 1.f);
  EXPECT_FLOAT_EQ(la[2][0], 2.f);
}

TEST(Mixup, TrainingSampleWithMixupHoldsTwoMosaicsOfLabels) {
  FourTiles t;
  Hyp h = no_augmentation();
  h.hsv_h = h.hsv_s = h.hsv_v = 0, h.fliplr = 0;
  std::vector<uint8_t> dst(64 * 64 * 3);
  std::vector<LabelRow> plain, mixed;
  size_t most_plain = 0, most_mixed = 0;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    SampleRng r1(seed), r2(seed);
    h.mixup = 0;
    build_sample(*t.ds, 0, 64, true, h, r1, dst.data(), &plain);
    h.mixup = 1;
    build_sample(*t.ds, 0, 64, true, h, r2, dst.data(), &mixed);
    // Same first mosaic (same draws up to the mixup), plus a second one's labels.
    ASSERT_GE(mixed.size(), plain.size());
    for (size_t k = 0; k < plain.size(); ++k) EXPECT_EQ(mixed[k], plain[k]);
    most_plain = std::max(most_plain, plain.size());
    most_mixed = std::max(most_mixed, mixed.size() - plain.size());
  }
  EXPECT_GT(most_plain, 0u);
  EXPECT_GT(most_mixed, 0u);
}
