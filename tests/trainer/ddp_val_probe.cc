// Test helper: validates a freshly seeded model on a dataset's val split, sharded over the
// ranks of a launcher (or alone), and prints one RESULT line with the gathered statistics'
// hash and the metrics, so a test can compare 1, 2 and 3 ranks.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "ddp/data_parallel.h"
#include "ddp/process_group.h"
#include "ddp/sharded_validation.h"
#include "model/yolo.h"
#include "util/log.h"
#include "val/validator.h"

using namespace yolo;

namespace {

uint64_t hash_stats(const DetectionStats& s) {
  std::vector<torch::Tensor> parts;
  for (size_t k = 0; k < static_cast<size_t>(s.images()); ++k) {
    const auto r = s.record(k);
    parts.insert(parts.end(), {r.tp, r.conf, r.pcls, r.tcls, torch::tensor(r.key, torch::kLong)});
  }
  return ddp::hash_tensors(parts);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sharded validation probe"};
  std::string cfg_name = "yolov5n.yaml", data;
  int img = 128, batch = 1;
  uint64_t seed = 0;
  ValOptions vopt;
  app.add_option("--cfg", cfg_name);
  app.add_option("--data", data)->required();
  app.add_option("--img", img);
  app.add_option("--batch-size", batch, "per rank");
  app.add_option("--seed", seed);
  app.add_option("--conf-thres", vopt.nms.conf_thres);
  CLI11_PARSE(app, argc, argv);
  try {
    auto group = ddp::ProcessGroup::from_environment();
    const int rank = group ? group->rank() : 0, world = group ? group->size() : 1;
    set_log_primary(rank == 0);
    auto dcfg = load_dataset_config(data);
    auto mcfg = load_model_config(resolve_model_path(cfg_name));
    mcfg.nc = dcfg.nc();
    torch::manual_seed(seed);
    YoloModel model(mcfg);
    DatasetOptions dso;
    dso.img_size = img;
    dso.cache = CacheMode::ram;
    dso.share_rank = rank;
    dso.share_world = world;
    dso.split_name = "val";
    Dataset ds(dcfg.val, dcfg.nc(), dso);
    LoaderOptions lo;
    lo.batch_size = batch;
    lo.img_size = img;
    lo.workers = 0;
    lo.rank = rank;
    lo.world_size = world;
    lo.pad_shards = false;
    BatchLoader loader(ds, lo);
    DetectionStats gathered;
    vopt.combine_shards = [&](DetectionStats& stats, torch::Tensor&, int&) {
      if (group) ddp::gather_detection_stats(*group, stats, ds, vopt.nms.max_det);
      gathered = stats;
    };
    auto r = validate(model, ds, loader, torch::Device(torch::kCPU), vopt, nullptr);
    int64_t detections = 0;
    for (size_t k = 0; k < static_cast<size_t>(gathered.images()); ++k) detections += gathered.record(k).conf.size(0);
    std::printf("RESULT images %lld detections %lld hash %016llx p %.17g r %.17g map50 %.17g map %.17g\n",
                static_cast<long long>(r.images), static_cast<long long>(detections),
                static_cast<unsigned long long>(hash_stats(gathered)), r.mp, r.mr, r.map50, r.map);
    std::fflush(stdout);
  } catch (const std::exception& e) {
    log_always(std::string("ddp-val-probe: error: ") + e.what());
    return 1;
  }
  return 0;
}
