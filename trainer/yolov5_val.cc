// yolov5-val: evaluates a checkpoint on a dataset's train, val or test split.

#include <CLI/CLI.hpp>

#include <thread>

#include "data/dataset.h"
#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "util/log.h"
#include "val/validator.h"

int main(int argc, char** argv) {
  CLI::App app{"YOLOv5 validation (LibTorch)"};
  std::string weights, data, device, task = "val";
  int batch_size = 32, img_size = 640, workers = 8;
  yolo::ValOptions vopt;
  bool half = true;
  app.add_option("--weights", weights, "checkpoint (last.pt / best.pt)")->required();
  app.add_option("--data", data, "dataset YAML")->required();
  app.add_option("--batch-size", batch_size, "batch size")->capture_default_str();
  app.add_option("--img,--imgsz,--img-size", img_size, "inference size (pixels)")->capture_default_str();
  app.add_option("--conf-thres", vopt.nms.conf_thres, "confidence threshold")->capture_default_str();
  app.add_option("--iou-thres", vopt.nms.iou_thres, "NMS IoU threshold")->capture_default_str();
  app.add_option("--max-det", vopt.nms.max_det, "maximum detections per image")->capture_default_str();
  app.add_option("--task", task, "train, val or test split")->capture_default_str();
  app.add_option("--device", device, "cpu, cuda, cuda:N or N");
  app.add_option("--workers", workers, "data loading threads")->capture_default_str();
  app.add_flag("--half,!--no-half", half, "fp16 autocast on CUDA (default on; never on the CPU)");
  CLI11_PARSE(app, argc, argv);

  try {
    auto cfg = yolo::load_dataset_config(data);
    const auto& split = yolo::split_for_task(cfg, task);
    auto dev = yolo::select_device(device);
    yolo::CheckpointMeta meta;
    auto model = yolo::load_model_from_checkpoint(weights, &meta);
    if (cfg.nc() != model->detect()->nc)
      throw std::runtime_error(fmt::format("dataset has {} classes, checkpoint {}", cfg.nc(), model->detect()->nc));
    for (auto& p : model->parameters()) p.set_requires_grad(false);
    yolo::log_info("Fusing layers... ");
    model->fuse();
    model->to(dev);
    if (dev.is_cuda()) model->to_channels_last();
    const int gs = 32;
    img_size = yolo::make_divisible(img_size, gs);
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    yolo::DatasetOptions dso;
    dso.img_size = img_size;
    dso.threads = cores;
    dso.split_name = task;
    yolo::Dataset ds(split, cfg.nc(), dso);
    yolo::LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.img_size = img_size;
    lo.workers = std::min(workers, cores);
    lo.pin_memory = dev.is_cuda();
    yolo::BatchLoader loader(ds, lo);
    vopt.amp = yolo::half_precision(half, dev);
    vopt.verbose = true;
    vopt.names = cfg.names;
    yolo::log_info("{} from {} (epoch {}) on {}{}", model->summary_line(), weights, meta.epoch, yolo::device_name(dev),
                   vopt.amp ? ", fp16" : "");
    auto r = yolo::validate(model, ds, loader, dev, vopt, nullptr);
    yolo::log_info("Speed: {:.1f} ms per image in total ({} images, {:.2f} s)", 1000 * r.seconds / std::max<int64_t>(1, r.images),
                   r.images, r.seconds);
  } catch (const std::exception& e) {
    yolo::log_line(std::string("yolov5-val: error: ") + e.what());
    return 1;
  }
  return 0;
}
