#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "scratch_dir.h"

using namespace yolo;
namespace fs = std::filesystem;

namespace {

std::string parse_error(const std::string& text, int nc = 3) {
  std::vector<LabelRow> rows;
  std::string err;
  return parse_label_text(text, nc, &rows, &err) ? std::string() : err;
}

// A scratch YOLO dataset: images/train + labels/train.
struct ScratchDataset : ScratchDir {
  explicit ScratchDataset(const std::string& name) : ScratchDir(name) {
    for (const char* s : {"images/train", "labels/train"}) fs::create_directories(path() / s);
  }
};

void write_image(const fs::path& p, int w, int h, uint8_t v) {
  ImageU8 img(w, h, v);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img.row(y)[x * 3] = static_cast<uint8_t>(x * 255 / w);
  write_png(p.string(), img);
}

}  // namespace

TEST(Labels, ParsesValidRowsAndBackground) {
  std::vector<LabelRow> rows;
  std::string err;
  ASSERT_TRUE(parse_label_text("0 0.5 0.5 0.2 0.3\n\n2 0.1 0.9 0.05 0.05\n0 0.5 0.5 0.2 0.3\n", 3, &rows, &err));
  EXPECT_EQ(rows.size(), 2u);  // duplicate dropped
  EXPECT_FLOAT_EQ(rows[1][0], 2.f);
  ASSERT_TRUE(parse_label_text("", 3, &rows, &err));
  EXPECT_TRUE(rows.empty());
  // A polygon row becomes its bounding box.
  ASSERT_TRUE(parse_label_text("1 0.1 0.2 0.5 0.2 0.3 0.6\n", 3, &rows, &err));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NEAR(rows[0][1], 0.3f, 1e-6);
  EXPECT_NEAR(rows[0][2], 0.4f, 1e-6);
  EXPECT_NEAR(rows[0][3], 0.4f, 1e-6);
  EXPECT_NEAR(rows[0][4], 0.4f, 1e-6);
}

TEST(Labels, RejectsBadFilesWithReasons) {
  EXPECT_NE(parse_error("0 0.5 0.5 0.2\n").find("4 columns"), std::string::npos);
  EXPECT_NE(parse_error("0 0.5 0.5 0.2 0.3 0.1\n").find("6 columns"), std::string::npos);
  EXPECT_NE(parse_error("3 0.5 0.5 0.2 0.3\n").find("class 3 outside [0, 3)"), std::string::npos);
  EXPECT_NE(parse_error("-1 0.5 0.5 0.2 0.3\n").find("outside"), std::string::npos);
  EXPECT_NE(parse_error("1.5 0.5 0.5 0.2 0.3\n").find("outside"), std::string::npos);
  EXPECT_NE(parse_error("0 1.5 0.5 0.2 0.3\n").find("normalised"), std::string::npos);
  EXPECT_NE(parse_error("0 0.5 -0.1 0.2 0.3\n").find("normalised"), std::string::npos);
  EXPECT_NE(parse_error("0 0.5 abc 0.2 0.3\n").find("not a number"), std::string::npos);
  EXPECT_NE(parse_error("0 0.5 0.5 0.2 0.3\n0 0.5\n").find("line 2"), std::string::npos);
}

TEST(Labels, LabelPathReplacesLastImagesDir) {
  EXPECT_EQ(label_path_for("/d/images/x/images/train/a.jpg"), "/d/images/x/labels/train/a.txt");
  EXPECT_EQ(label_path_for("/d/images/train/b.png"), "/d/labels/train/b.txt");
}

TEST(Dataset, SkipsBadFilesAndNeverCrashes) {
  ScratchDataset root("skip");
  write_image(root / "images/train/good.png", 64, 48, 50);
  std::ofstream(root / "labels/train/good.txt") << "0 0.5 0.5 0.25 0.5\n";
  write_image(root / "images/train/background.png", 32, 32, 90);  // no label file
  write_image(root / "images/train/badclass.png", 32, 32, 90);
  std::ofstream(root / "labels/train/badclass.txt") << "7 0.5 0.5 0.2 0.2\n";
  write_image(root / "images/train/badcols.png", 32, 32, 90);
  std::ofstream(root / "labels/train/badcols.txt") << "0 0.5 0.5\n";
  std::ofstream(root / "images/train/corrupt.jpg") << "not an image";
  Dataset ds({(root / "images/train").string()}, 2, 64, 2, "test");
  ASSERT_EQ(ds.size(), 2u);
  EXPECT_NE(ds.path(0).find("background"), std::string::npos);
  EXPECT_NE(ds.path(1).find("good"), std::string::npos);
  EXPECT_EQ(ds.image(1)->w, 64);
  EXPECT_EQ(ds.image(1)->h, 48);
  EXPECT_EQ(ds.instances(), 1u);
}

TEST(Dataset, MissingSourcesAndYamlAreClearErrors) {
  EXPECT_THROW(list_images({"/nonexistent/dir"}), std::runtime_error);
  EXPECT_THROW(load_dataset_config("/nonexistent/data.yaml"), std::runtime_error);
  ScratchDataset root("yaml");
  std::ofstream(root / "bad.yaml") << "train: x\nval: y\n";
  try {
    load_dataset_config((root / "bad.yaml").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'names' field missing"), std::string::npos) << e.what();
  }
  std::ofstream(root / "keys.yaml") << "train: x\nval: y\nnames:\n  a: cat\n";
  EXPECT_THROW(load_dataset_config((root / "keys.yaml").string()), std::runtime_error);
}

// check_dataset's rules: a relative `path` from YOLOv5's ROOT (here the base
// directory given, the working directory by default), not from the YAML's
// folder; splits relative to `path`; a missing "../x" retried as "x"; nc from names.
TEST(Dataset, YamlPathsResolveAsYolov5) {
  ScratchDataset root("yamlpaths");
  fs::create_directories(root / "cfg");
  fs::create_directories(root / "data/images/val");
  std::ofstream(root / "cfg/d.yaml") << "path: data\ntrain: ../images/train\nval: [images/val]\ntest:\n"
                                        "nc: 5\nnames: [cat, dog]\n";
  auto cfg = load_dataset_config((root / "cfg/d.yaml").string(), root.path().string());
  EXPECT_EQ(cfg.root, (root / "data").string());
  EXPECT_EQ(cfg.train, (std::vector<std::string>{(root / "images/train").string()}));  // data/../images/train exists
  EXPECT_EQ(cfg.val, (std::vector<std::string>{(root / "data/images/val").string()}));
  EXPECT_TRUE(cfg.test.empty());
  EXPECT_EQ(cfg.nc(), 2);  // the stale nc: 5 is a warning; names decide
  EXPECT_EQ(cfg.names[1], "dog");
  // "../x" that does not exist from `path` is tried as "x" (a single entry only).
  std::ofstream(root / "cfg/e.yaml") << "path: data\ntrain: ../images/val\nval: images/val\ntest: images/val\n"
                                        "names: {0: a}\n";
  cfg = load_dataset_config((root / "cfg/e.yaml").string(), root.path().string());
  EXPECT_EQ(cfg.train[0], (root / "data/images/val").string());
  EXPECT_EQ(split_for_task(cfg, "test"), cfg.test);
  EXPECT_EQ(split_for_task(cfg, "train"), cfg.train);
  // No `path`: the base directory itself; an absolute `path` stays.
  std::ofstream(root / "cfg/f.yaml") << "train: images/train\nval: images/train\nnames: [a]\n";
  EXPECT_EQ(load_dataset_config((root / "cfg/f.yaml").string(), root.path().string()).train[0],
            (root / "images/train").string());
  std::ofstream(root / "cfg/g.yaml") << "path: " << (root / "data").string() << "\ntrain: images/val\nval: images/val\n"
                                        "names: [a]\n";
  EXPECT_EQ(load_dataset_config((root / "cfg/g.yaml").string(), "/elsewhere").train[0],
            (root / "data/images/val").string());
}

TEST(Dataset, ValTasksOtherThanTrainValTestAreRefused) {
  DatasetConfig cfg;
  cfg.yaml_path = "d.yaml";
  cfg.train = {"/t"}, cfg.val = {"/v"};
  EXPECT_EQ(split_for_task(cfg, "val"), cfg.val);
  for (const char* task : {"test", "speed", "study", "vall"}) {
    try {
      split_for_task(cfg, task);
      FAIL() << task;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("--task ") + task), std::string::npos) << e.what();
    }
  }
}

TEST(Augment, LetterboxPadsAndCentres) {
  ImageU8 img(40, 20, 200);
  Letterbox lb;
  auto out = letterbox(img, 64, /*scaleup=*/true, &lb);
  EXPECT_EQ(out.w, 64);
  EXPECT_EQ(out.h, 64);
  EXPECT_FLOAT_EQ(lb.ratio, 1.6f);
  EXPECT_FLOAT_EQ(lb.padh, 16.f);  // (64 - 32) / 2
  EXPECT_EQ(lb.w, 64);
  EXPECT_EQ(lb.h, 32);
  EXPECT_EQ(out.row(0)[0], 114);
  EXPECT_EQ(out.row(32)[3 * 32], 200);
  auto small = letterbox(img, 64, /*scaleup=*/false, &lb);
  EXPECT_FLOAT_EQ(lb.ratio, 1.f);
  EXPECT_FLOAT_EQ(lb.padw, 12.f);
  EXPECT_EQ(lb.w, 40);
  EXPECT_EQ(lb.h, 20);
}

TEST(Loader, DeterministicForASeedWhateverTheWorkers) {
  ScratchDataset root("loader");
  for (int i = 0; i < 6; ++i) {
    write_image(root / "images/train" / ("im" + std::to_string(i) + ".png"), 80 + 8 * i, 64, static_cast<uint8_t>(20 * i));
    std::ofstream(root / "labels/train" / ("im" + std::to_string(i) + ".txt")) << "1 0.5 0.5 0.4 0.4\n0 0.2 0.3 0.1 0.2\n";
  }
  Dataset ds({(root / "images/train").string()}, 2, 64, 2, "test");
  LoaderOptions lo;
  lo.batch_size = 4;
  lo.img_size = 64;
  lo.augment = true;
  lo.shuffle = true;
  lo.seed = 7;
  lo.workers = 0;
  BatchLoader sync_loader(ds, lo);
  lo.workers = 3;
  BatchLoader threaded(ds, lo);
  sync_loader.start_epoch(1);
  threaded.start_epoch(1);
  EXPECT_EQ(threaded.num_batches(), 2);
  Batch a, b;
  int n = 0;
  while (sync_loader.next(&a)) {
    ASSERT_TRUE(threaded.next(&b));
    EXPECT_TRUE(torch::equal(a.images, b.images));
    EXPECT_TRUE(torch::equal(a.targets, b.targets));
    EXPECT_EQ(a.images.sizes(), (std::vector<int64_t>{n == 0 ? 4 : 2, 64, 64, 3}));
    if (a.targets.size(0)) {
      EXPECT_TRUE((a.targets.narrow(1, 2, 4) >= 0).all().item<bool>());
      EXPECT_TRUE((a.targets.narrow(1, 2, 4) <= 1).all().item<bool>());
      EXPECT_TRUE((a.targets.select(1, 0) < a.images.size(0)).all().item<bool>());
    }
    ++n;
  }
  EXPECT_FALSE(threaded.next(&b));
  EXPECT_EQ(n, 2);
  // Another epoch gives another order / augmentation.
  sync_loader.start_epoch(2);
  ASSERT_TRUE(sync_loader.next(&b));
  sync_loader.start_epoch(1);
  ASSERT_TRUE(sync_loader.next(&a));
  EXPECT_FALSE(torch::equal(a.images, b.images));
}

TEST(ShapesDataset, SameOutputWhateverTheThreadCount) {
  const char* tool = std::getenv("MAKE_SHAPES_DATASET");
  if (!tool) GTEST_SKIP() << "MAKE_SHAPES_DATASET not set";
  ScratchDir scratch_a("shapes-a"), scratch_b("shapes-b");
  const fs::path& a = scratch_a.path();
  const fs::path& b = scratch_b.path();
  for (const auto& [dir, threads] : {std::pair{a, 1}, std::pair{b, 3}}) {
    const std::string cmd = std::string(tool) + " --out " + dir.string() +
                            " --train 6 --val 2 --img 96 --seed 11 --threads " + std::to_string(threads) + " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  int files = 0;
  for (const char* sub : {"images/train", "labels/train", "images/val", "labels/val"}) {
    for (const auto& e : fs::directory_iterator(a / sub)) {
      EXPECT_EQ(slurp(e.path()), slurp(b / sub / e.path().filename())) << e.path();
      ++files;
    }
  }
  EXPECT_EQ(files, 16);
  // The dataset YAML loads and lists the three classes.
  auto cfg = load_dataset_config((a / "shapes.yaml").string());
  EXPECT_EQ(cfg.names, (std::vector<std::string>{"circle", "rectangle", "triangle"}));
  Dataset ds(cfg.train, cfg.nc(), 96, 2, "shapes");
  EXPECT_EQ(ds.size(), 6u);
  EXPECT_GT(ds.instances(), 0u);
}
