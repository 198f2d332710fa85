// yolov5-train: YOLOv5 training with train.py's flag names. Under a launcher (ringlink-run,
// torchrun, mpirun, srun) each process is one rank of a data-parallel run over ringlink.

#include <CLI/CLI.hpp>
#include <ringlink/error.h>

#include <filesystem>

#include "ddp/process_group.h"
#include "model/yolo.h"
#include "train/trainer.h"
#include "util/log.h"

namespace fs = std::filesystem;

namespace {

// --resume with no value: the newest last.pt under the project directory.
std::string find_last_checkpoint(const std::string& project) {
  std::string best;
  fs::file_time_type best_time{};
  std::error_code ec;
  if (!fs::exists(project)) return best;
  for (const auto& e : fs::recursive_directory_iterator(project, ec)) {
    if (e.path().filename() == "last.pt" && (best.empty() || e.last_write_time() > best_time)) {
      best = e.path().string();
      best_time = e.last_write_time();
    }
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"YOLOv5 trainer (LibTorch)"};
  yolo::TrainOptions o;
  std::string resume, cache;
  bool summary = false, no_amp = false;
  app.add_option("--cfg", o.cfg,
                 "model YAML (path, or a bundled name: yolov5n/s/m/l/x.yaml; default: the --weights checkpoint's "
                 "model, else yolov5s.yaml)");
  app.add_option("--weights", o.weights,
                 "initial weights: a yolov5-train checkpoint, or a PyTorch state_dict file "
                 "(trainer/tools/export-ultralytics-weights makes one from an ultralytics .pt)");
  app.add_option("--data", o.data, "dataset YAML (path, train, val, names)");
  app.add_option("--hyp", o.hyp, "hyperparameter YAML (default: built-in hyp.scratch-low)");
  app.add_option("--epochs", o.epochs, "total training epochs")->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "total batch size over all ranks")->capture_default_str();
  app.add_option("--img,--imgsz,--img-size", o.img_size, "train and val image size (pixels)")->capture_default_str();
  app.add_option("--device", o.device,
                 "cpu, cuda, cuda:N, N, or a list 0,1,2,3 (entry LOCAL_RANK per rank; default: cuda:LOCAL_RANK if "
                 "available, else cpu)");
  app.add_option("--workers", o.workers, "data loading threads")->capture_default_str();
  app.add_option("--project", o.project, "save to project/name")->capture_default_str();
  app.add_option("--name", o.name, "save to project/name")->capture_default_str();
  app.add_flag("--exist-ok", o.exist_ok, "existing project/name ok, do not increment");
  app.add_option("--resume", resume, "resume from a last.pt (or a run directory; no value: the newest run)")
      ->expected(0, 1);
  app.add_option("--seed", o.seed, "global training seed")->capture_default_str();
  app.add_flag("--cos-lr", o.cos_lr, "cosine LR schedule");
  app.add_option("--label-smoothing", o.label_smoothing, "label smoothing epsilon")->capture_default_str();
  app.add_flag("--noval", o.noval, "only validate the final epoch");
  app.add_flag("--nosave", o.nosave, "only save the final checkpoint");
  app.add_flag("--no-amp", no_amp, "disable mixed precision on CUDA");
  app.add_option("--max-batches", o.max_batches, "stop each epoch after N batches (smoke tests)");
  app.add_option("--cache", cache, "keep decoded images in ram or on disk (no value: ram; default: none)")
      ->expected(0, 1);
  app.add_flag("--summary", summary, "print the model summary and exit");
  app.add_flag("--sync-bn", o.sync_bn, "synchronised BatchNorm over all ranks");
  app.add_option("--bucket-mb", o.bucket_mb,
                 "gradient bucket size in MiB, allreduced during backward (0: one allreduce after backward)")
      ->capture_default_str();
  app.add_option("--ddp-trace", o.ddp_trace, "write per-step parameter hashes to PATH.rankN (diagnostics)");
  int ignored_local_rank = -1;  // torch.distributed.launch passes it; LOCAL_RANK is read from the environment
  app.add_option("--local_rank,--local-rank", ignored_local_rank, "ignored (the launcher's LOCAL_RANK is used)");
  CLI11_PARSE(app, argc, argv);
  o.amp = !no_amp;
  if (app.count("--cache")) o.cache = cache.empty() ? "ram" : cache;

  try {
    if (summary) {
      auto cfg = yolo::load_model_config(yolo::resolve_model_path(o.cfg.empty() ? "yolov5s.yaml" : o.cfg));
      yolo::YoloModel model(cfg);
      std::printf("%s\n", model->summary_line().c_str());
      return 0;
    }
    // Ranks of a data-parallel run, when a launcher started this process.
    std::shared_ptr<yolo::ddp::ProcessGroup> group;
    try {
      group = yolo::ddp::ProcessGroup::from_environment();
    } catch (const ringlink::Error& e) {
      throw std::runtime_error(std::string("cannot join the data-parallel job: ") + e.what());
    }
    if (group) yolo::set_log_primary(group->primary());
    std::string resume_from;
    if (app.count("--resume") && group && !group->primary()) {
      // Rank 0 chooses the checkpoint (the newest run may change while ranks look).
      group->broadcast(resume_from, 0);
    } else if (app.count("--resume")) {
      if (resume.empty()) {
        resume_from = find_last_checkpoint(o.project);
        if (resume_from.empty()) throw std::runtime_error("--resume: no last.pt found under " + o.project);
      } else if (fs::is_directory(resume)) {
        resume_from = (fs::path(resume) / "weights" / "last.pt").string();
      } else {
        resume_from = resume;
      }
      if (group) group->broadcast(resume_from, 0);
    } else if (o.data.empty()) {
      throw std::runtime_error("--data is required (a dataset YAML; make-shapes-dataset writes one)");
    }
    yolo::Trainer trainer(o, resume_from, group);
    trainer.run();
  } catch (const std::exception& e) {
    yolo::log_always(std::string("yolov5-train: error: ") + e.what());
    return 1;
  }
  return 0;
}
