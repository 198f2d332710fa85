#include "train/trainer.h"

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "ddp/data_parallel.h"
#include "ddp/process_group.h"
#include "ddp/sync_batch_norm.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/weights.h"
#include "util/log.h"
#include "util/plot.h"

namespace fs = std::filesystem;

namespace yolo {

namespace {

double interp2(double x, double x0, double x1, double y0, double y1) {
  if (x <= x0) return y0;
  if (x >= x1) return y1;
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

std::string fmt_time(double s) {
  const int t = static_cast<int>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02d}:{:02d}", t / 3600, t / 60 % 60, t % 60)
                   : fmt::format("{:02d}:{:02d}", t / 60, t % 60);
}

// Progress line in the style of YOLOv5's tqdm bar.
std::string progress_line(const std::string& prefix, int done, int total, double elapsed) {
  const int width = 10;
  const double frac = total ? static_cast<double>(done) / total : 1.0;
  const int filled = static_cast<int>(frac * width);
  std::string bar;
  for (int i = 0; i < width; ++i) bar += i < filled ? "\u2588" : " ";
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double remaining = rate > 0 ? (total - done) / rate : 0.0;
  return fmt::format("{}: {:3d}%|{}| {}/{} [{}<{}, {:.2f}it/s]", prefix, static_cast<int>(frac * 100), bar, done,
                     total, fmt_time(elapsed), fmt_time(remaining), rate);
}

}  // namespace

std::string increment_path(const std::string& base, bool exist_ok) {
  if (exist_ok || !fs::exists(base)) return base;
  for (int n = 2;; ++n) {
    const std::string p = base + std::to_string(n);
    if (!fs::exists(p)) return p;
  }
}

std::string options_to_yaml(const TrainOptions& o) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "cfg" << YAML::Value << o.cfg;
  e << YAML::Key << "weights" << YAML::Value << o.weights;
  e << YAML::Key << "data" << YAML::Value << o.data;
  e << YAML::Key << "hyp" << YAML::Value << o.hyp;
  e << YAML::Key << "epochs" << YAML::Value << o.epochs;
  e << YAML::Key << "batch_size" << YAML::Value << o.batch_size;
  e << YAML::Key << "imgsz" << YAML::Value << o.img_size;
  e << YAML::Key << "device" << YAML::Value << o.device;
  e << YAML::Key << "workers" << YAML::Value << o.workers;
  e << YAML::Key << "project" << YAML::Value << o.project;
  e << YAML::Key << "name" << YAML::Value << o.name;
  e << YAML::Key << "exist_ok" << YAML::Value << o.exist_ok;
  e << YAML::Key << "seed" << YAML::Value << o.seed;
  e << YAML::Key << "cos_lr" << YAML::Value << o.cos_lr;
  e << YAML::Key << "label_smoothing" << YAML::Value << o.label_smoothing;
  e << YAML::Key << "noval" << YAML::Value << o.noval;
  e << YAML::Key << "nosave" << YAML::Value << o.nosave;
  e << YAML::Key << "amp" << YAML::Value << o.amp;
  e << YAML::Key << "cache" << YAML::Value << o.cache;
  e << YAML::Key << "max_batches" << YAML::Value << o.max_batches;
  e << YAML::Key << "save_dir" << YAML::Value << o.save_dir;
  e << YAML::Key << "sync_bn" << YAML::Value << o.sync_bn;
  e << YAML::Key << "bucket_mb" << YAML::Value << o.bucket_mb;
  e << YAML::Key << "world_size" << YAML::Value << o.world_size;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

TrainOptions options_from_yaml(const std::string& text) {
  TrainOptions o;
  YAML::Node n = YAML::Load(text);
  auto get = [&](const char* k, auto& v) {
    if (n[k]) v = n[k].as<std::decay_t<decltype(v)>>();
  };
  get("cfg", o.cfg);
  get("weights", o.weights);
  get("data", o.data);
  get("hyp", o.hyp);
  get("epochs", o.epochs);
  get("batch_size", o.batch_size);
  get("imgsz", o.img_size);
  get("device", o.device);
  get("workers", o.workers);
  get("project", o.project);
  get("name", o.name);
  get("exist_ok", o.exist_ok);
  get("seed", o.seed);
  get("cos_lr", o.cos_lr);
  get("label_smoothing", o.label_smoothing);
  get("noval", o.noval);
  get("nosave", o.nosave);
  get("amp", o.amp);
  get("cache", o.cache);
  get("max_batches", o.max_batches);
  get("save_dir", o.save_dir);
  get("sync_bn", o.sync_bn);
  get("bucket_mb", o.bucket_mb);
  get("world_size", o.world_size);
  return o;
}

Trainer::Trainer(TrainOptions opts, const std::string& resume_from, std::shared_ptr<ddp::ProcessGroup> group)
    : opts_(std::move(opts)), resume_from_(resume_from), group_(std::move(group)) {
  const int world = group_ ? group_->size() : 1;
  const int rank = group_ ? group_->rank() : 0;
  std::unique_ptr<CheckpointReader> ckpt;  // the run to resume, read once
  CheckpointMeta meta;
  if (!resume_from_.empty()) {
    ckpt = std::make_unique<CheckpointReader>(resume_from_);
    meta = ckpt->meta();
    const std::string device = opts_.device, trace = opts_.ddp_trace;
    opts_ = options_from_yaml(meta.opt_yaml);
    if (!device.empty()) opts_.device = device;
    opts_.ddp_trace = trace;
    if (opts_.world_size != world && rank == 0)
      log_warn("{} was written by {} rank(s), this run has {}: the global batch stays {}, each rank now loads {}{}",
               resume_from_, opts_.world_size, world, opts_.batch_size, opts_.batch_size / std::max(1, world),
               opts_.sync_bn ? "" : " (BatchNorm statistics now come from that many images per rank)");
    hyp_ = parse_hyp(meta.hyp_yaml, resume_from_);
    if (meta.epoch + 1 >= opts_.epochs)
      throw std::runtime_error(fmt::format("{} already trained {} epochs; nothing to resume", resume_from_, opts_.epochs));
    log_info("Resuming training from {} ({} of {} epochs done)", resume_from_, meta.epoch + 1, opts_.epochs);
  } else {
    // --hyp: a path, or a bundled file by name (hyp.scratch-low.yaml, ...).
    hyp_ = opts_.hyp.empty() ? Hyp{} : load_hyp(resolve_model_path(opts_.hyp));
  }
  if (opts_.epochs < 1) throw std::runtime_error("--epochs must be >= 1");
  parse_cache_mode(opts_.cache);  // a bad --cache fails before any work
  if (opts_.batch_size < 1) throw std::runtime_error("--batch-size must be >= 1");
  if (opts_.batch_size % world != 0)
    throw std::runtime_error(fmt::format("--batch-size {} is not a multiple of WORLD_SIZE {}: the global batch is split "
                                         "evenly over the ranks",
                                         opts_.batch_size, world));
  opts_.world_size = world;
  data_ = load_dataset_config(opts_.data);
  device_ = group_ ? ddp::rank_device(opts_.device, group_->local_rank(), group_->local_size())
                   : select_device(opts_.device);
  if (group_ && !device_.is_cuda() && group_->local_size() > 1 && !std::getenv("OMP_NUM_THREADS")) {
    // Ranks sharing this host's cores (torchrun sets OMP_NUM_THREADS=1 for the same reason).
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(std::max(1, cores / group_->local_size()));
  }
  amp_ = opts_.amp && device_.is_cuda();
  torch::manual_seed(opts_.seed);
  if (device_.is_cuda()) {
    torch::cuda::manual_seed_all(opts_.seed);
    cuda_setup_fast_kernels();
    // The CPU side only assigns targets and runs NMS bookkeeping: one
    // intra-op thread, so OpenMP workers do not spin against the loaders.
    torch::set_num_threads(1);
  }

  // Model (nc from the dataset, as YOLOv5 overrides the model YAML's).
  ModelConfig cfg;
  std::unique_ptr<PretrainedWeights> pretrained;
  if (!resume_from_.empty()) {
    cfg = parse_model_config(meta.cfg_yaml, meta.cfg_name);
  } else {
    if (!opts_.weights.empty()) pretrained = std::make_unique<PretrainedWeights>(read_pretrained_weights(opts_.weights));
    cfg = training_model_config(opts_.cfg, pretrained.get());
  }
  if (cfg.nc != data_.nc()) {
    if (resume_from_.empty()) log_info("Overriding model.yaml nc={} with nc={}", cfg.nc, data_.nc());
    cfg.nc = data_.nc();
  }
  model_ = YoloModel(cfg);
  if (pretrained) load_pretrained(model_, *pretrained, !opts_.cfg.empty());
  pretrained.reset();
  const int gs = std::max(32, static_cast<int>(model_->detect()->stride.max().item<float>()));
  const int img = make_divisible(opts_.img_size, gs);
  if (img != opts_.img_size) log_warn("--img {} must be a multiple of max stride {}, updating to {}", opts_.img_size, gs, img);
  opts_.img_size = img;
  model_->to(device_);
  if (device_.is_cuda()) model_->to_channels_last();

  // Save directory: rank 0 names and creates it.
  if (resume_from_.empty() && rank == 0)
    opts_.save_dir = increment_path((fs::path(opts_.project) / opts_.name).string(), opts_.exist_ok);
  if (group_) group_->broadcast(opts_.save_dir, 0);
  if (rank == 0) fs::create_directories(fs::path(opts_.save_dir) / "weights");

  // Optimizer: nominal batch 64 via gradient accumulation, decay scaled to match.
  accumulate_ = std::max(static_cast<int>(std::nearbyint(static_cast<double>(nbs_) / opts_.batch_size)), 1);
  const double decay = hyp_.weight_decay * opts_.batch_size * accumulate_ / nbs_;
  auto groups = yolo_param_groups(*model_, hyp_.lr0, hyp_.momentum, decay);
  log_info("optimizer: SGD(lr={}) with parameter groups {} weight(decay=0.0), {} weight(decay={}), {} bias", hyp_.lr0,
           groups[2].params.size(), groups[1].params.size(), decay, groups[0].params.size());
  optimizer_ = std::make_unique<SGD>(std::move(groups), /*nesterov=*/true);
  params_ = optimizer_->all_params();
  scaler_ = std::make_unique<GradScaler>(amp_, device_);

  if (!resume_from_.empty()) {
    ckpt->load_weights(model_, "model");
    ckpt->load_training_state(optimizer_.get(), scaler_.get());
    start_epoch_ = static_cast<int>(meta.epoch + 1);
    best_fitness_ = meta.best_fitness;
    last_opt_step_ = meta.last_opt_step;
  }
  ema_ = std::make_unique<ModelEMA>(model_);
  if (!resume_from_.empty()) {
    ckpt->load_weights(ema_->model(), "ema");
    ema_->set_updates(meta.ema_updates);
  }

  // Loss gains rescaled for levels, classes and image size.
  const int nl = model_->detect()->nl;
  loss_ = std::make_unique<ComputeLoss>(model_->detect()->anchors, data_.nc(),
                                        scaled_gains(hyp_, nl, data_.nc(), opts_.img_size, opts_.label_smoothing));

  // Data: decoded when a sample needs it, or cached as --cache says.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int workers = std::max(0, std::min(opts_.workers, cores));
  DatasetOptions dso;
  dso.img_size = opts_.img_size;
  dso.threads = cores;
  dso.cache = parse_cache_mode(opts_.cache);
  dso.split_name = "train";
  if (group_) {
    // Each rank caches its share; all drop the images any rank failed to decode.
    dso.share_rank = rank;
    dso.share_world = world;
    dso.processes_per_host = group_->local_size();
    dso.agree_failed = [this](const std::vector<size_t>& failed, size_t n) { return group_->union_of(failed, n); };
  }
  train_ds_ = std::make_unique<Dataset>(data_.train, data_.nc(), dso);
  LoaderOptions lo;
  lo.batch_size = opts_.batch_size / world;
  lo.rank = rank;
  lo.world_size = world;
  lo.img_size = opts_.img_size;
  lo.workers = workers;
  lo.augment = true;
  lo.shuffle = true;
  lo.pin_memory = device_.is_cuda();
  lo.seed = opts_.seed;
  lo.hyp = hyp_;
  train_loader_ = std::make_unique<BatchLoader>(*train_ds_, lo);
  dso.split_name = "val";
  if (opts_.noval) dso.cache = CacheMode::none;  // train.py: cache=None if noval
  val_ds_ = std::make_unique<Dataset>(data_.val, data_.nc(), dso);
  LoaderOptions vo = lo;
  vo.batch_size = opts_.batch_size / world * 2;
  vo.augment = false;
  vo.shuffle = false;
  vo.pad_shards = false;
  val_loader_ = std::make_unique<BatchLoader>(*val_ds_, vo);
  check_anchors();

  if (group_) {
    ddp::DataParallelOptions dpo;
    dpo.sync_bn = opts_.sync_bn;
    dpo.bucket_mb = opts_.bucket_mb;
    dpo.trace_path = opts_.ddp_trace;
    dp_ = std::make_unique<ddp::DataParallel>(group_, model_, dpo);
    // After AutoAnchor: every rank starts from rank 0's state (anchors included).
    std::vector<torch::Tensor> state = model_->parameters(true);
    for (auto& t : model_->buffers(true)) state.push_back(t);
    for (auto& t : ema_->model()->parameters(true)) state.push_back(t);
    for (auto& t : ema_->model()->buffers(true)) state.push_back(t);
    for (auto& g : optimizer_->momentum_buffers()) state.insert(state.end(), g.begin(), g.end());
    dp_->broadcast_from_primary(state);
  } else if (opts_.sync_bn) {
    // One process: the same arithmetic as the data-parallel runs it is the reference for.
    model_->set_batch_norm_forward(ddp::sync_batch_norm(nullptr));
    log_info("--sync-bn in a single process: BatchNorm through the synchronised code path, without communication");
  }

  if (rank == 0) {
    std::ofstream(fs::path(opts_.save_dir) / "hyp.yaml") << hyp_to_yaml(hyp_);
    std::ofstream(fs::path(opts_.save_dir) / "opt.yaml") << options_to_yaml(opts_);
  }
  log_info("{} on {}{}", model_->summary_line(), device_name(device_), amp_ ? ", mixed precision (fp16 autocast)" : "");
  log_info("Image sizes {} train, {} val; {} dataloader workers; nominal batch {} (accumulate {})", opts_.img_size,
           opts_.img_size, workers, nbs_, accumulate_);
  log_info("Logging results to {}", opts_.save_dir);
}

Trainer::~Trainer() = default;

void Trainer::check_anchors() {
  // Best possible recall of the anchors on the training labels (YOLOv5's
  // AutoAnchor check). Anchor evolution is not implemented; warn instead.
  auto det = model_->detect();
  auto anchors_px = (det->anchors.to(torch::kCPU) * det->stride.to(torch::kCPU).view({-1, 1, 1})).view({-1, 2});
  const auto* a = anchors_px.data_ptr<float>();
  const int64_t na = anchors_px.size(0);
  const double thr = 1.0 / hyp_.anchor_t;
  double bpr = 0, aat = 0;
  int64_t n = 0;
  for (size_t i = 0; i < train_ds_->size(); ++i) {
    const auto [w0, h0] = train_ds_->native_size(i);
    const double s = static_cast<double>(opts_.img_size) / std::max(w0, h0);
    for (const auto& l : train_ds_->labels(i)) {
      const double w = l[3] * w0 * s, h = l[4] * h0 * s;
      if (w < 3 || h < 3) continue;
      double best = 0;
      int above = 0;
      for (int64_t k = 0; k < na; ++k) {
        const double rw = w / a[2 * k], rh = h / a[2 * k + 1];
        const double x = std::min(std::min(rw, 1 / rw), std::min(rh, 1 / rh));
        best = std::max(best, x);
        above += x > thr;
      }
      bpr += best > thr;
      aat += above;
      ++n;
    }
  }
  if (n == 0) return;
  bpr /= n, aat /= n;
  log_info("AutoAnchor: {:.2f} anchors/target, {:.3f} Best Possible Recall (BPR).{}", aat, bpr,
           bpr > 0.98 ? " Current anchors are a good fit to dataset" : " WARNING: anchors fit poorly (no evolution here)");
}

double Trainer::lf(double x) const {
  const double E = opts_.epochs, lrf = hyp_.lrf;
  if (opts_.cos_lr) return ((1 - std::cos(x * M_PI / E)) / 2) * (lrf - 1) + 1;
  return (1 - x / E) * (1.0 - lrf) + lrf;
}

void Trainer::set_epoch_lr(int epoch) {
  for (auto& g : optimizer_->groups()) g.lr = g.initial_lr * lf(epoch);
}

double Trainer::warmup_iterations() const {
  // max(round(warmup_epochs * batches per epoch), 100), as train.py.
  return std::max(std::nearbyint(hyp_.warmup_epochs * train_loader_->num_batches()), 100.0);
}

void Trainer::warmup(int64_t ni, int epoch) {
  const double nw = warmup_iterations();
  accumulate_ = std::max(1, static_cast<int>(std::nearbyint(interp2(ni, 0, nw, 1, static_cast<double>(nbs_) / opts_.batch_size))));
  auto& groups = optimizer_->groups();
  for (size_t j = 0; j < groups.size(); ++j) {
    auto& g = groups[j];
    g.lr = interp2(ni, 0, nw, j == 0 ? hyp_.warmup_bias_lr : 0.0, g.initial_lr * lf(epoch));
    g.momentum = interp2(ni, 0, nw, hyp_.warmup_momentum, hyp_.momentum);
  }
}

void Trainer::step() {
  // Gradients are complete here (data-parallel: once summed over the ranks).
  if (on_gradients_ready) on_gradients_ready(params_);
  if (dp_) dp_->reduce_gradients();
  scaler_->unscale(params_);
  auto norm = clip_grad_norm(params_, 10.0);
  // With AMP the scaler's inf/NaN flag decides; without it, the gradient norm.
  bool ok = amp_ ? scaler_->step_ok() : std::isfinite(norm.item<double>());
  if (dp_) ok = dp_->agree_step(ok, scaler_.get());
  if (ok) {
    optimizer_->step();
  } else {
    ++skipped_steps_;
    if (!amp_) log_warn("non-finite gradients; optimizer step skipped");
  }
  scaler_->update();
  optimizer_->zero_grad();
  if (dp_) dp_->sync_buffers(model_);
  ema_->update(model_);
  ++optimizer_steps_;
  if (dp_) dp_->end_step(model_, ema_->model(), optimizer_steps_);
}

EpochResult Trainer::train_epoch(int epoch) {
  EpochResult r;
  r.epoch = epoch;
  model_->train();
  set_epoch_lr(epoch);
  // A partial accumulation left by the previous epoch is dropped, as train.py's
  // optimizer.zero_grad() before its batch loop.
  optimizer_->zero_grad();
  const int nb = train_loader_->num_batches();
  const double nw = warmup_iterations();
  const int total = opts_.max_batches > 0 ? std::min(nb, opts_.max_batches) : nb;
  auto mloss = torch::zeros({3}, torch::TensorOptions().device(device_));
  const bool tty = stderr_is_tty() && log_is_primary();
  log_line(fmt::format("\n{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}", "Epoch", "GPU_mem", "box_loss", "obj_loss",
                       "cls_loss", "Instances", "Size"));
  // Release what earlier phases cached (autotuning workspaces, validation
  // batches) so each epoch's peak reflects training itself.
  cuda_synchronize(device_);
  cuda_empty_cache(device_);
  cuda_reset_peak(device_);
  train_loader_->start_epoch(epoch);
  const auto t0 = std::chrono::steady_clock::now();
  auto last_print = t0;
  int next_report = 1;  // quarter marks when not on a terminal
  Batch batch;
  int i = 0;
  auto print = [&](bool final) {
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto ml = mloss.to(torch::kCPU);
    const auto mem = cuda_memory(device_);
    const std::string prefix = fmt::format(
        "{:>11}{:>11}{:>11.4g}{:>11.4g}{:>11.4g}{:>11}{:>11}", fmt::format("{}/{}", epoch, opts_.epochs - 1),
        device_.is_cuda() ? fmt::format("{:.3g}G", mem.reserved_gb) : "0G", ml[0].item<double>(), ml[1].item<double>(),
        ml[2].item<double>(), batch.targets.defined() ? batch.targets.size(0) : 0, opts_.img_size);
    const std::string line = progress_line(prefix, i, total, el);
    if (tty) {
      std::fputs(("\r" + line + (final ? "\n" : "")).c_str(), stderr);
      std::fflush(stderr);
    } else {
      log_line(line);
    }
  };
  for (; i < total && train_loader_->next(&batch); ++i) {
    const int64_t ni = i + static_cast<int64_t>(nb) * epoch;
    auto imgs = batch.images.to(device_, /*non_blocking=*/true).permute({0, 3, 1, 2});
    // uint8 NHWC travels; normalising on the device. On CUDA the NHWC layout is
    // kept (channels_last); the CPU path uses plain NCHW.
    imgs = (amp_ ? imgs.to(torch::kHalf) : imgs.to(torch::kFloat)).div_(255.0);
    if (!device_.is_cuda()) imgs = imgs.contiguous();
    if (ni <= nw) warmup(ni, epoch);
    const bool stepping = ni - last_opt_step_ >= accumulate_;
    if (dp_) dp_->begin_micro_batch(*loss_, batch.targets, imgs.size(0), imgs.size(2), imgs.size(3), stepping);

    std::vector<torch::Tensor> preds;
    {
      AutocastGuard autocast(amp_);
      preds = model_->forward(imgs);
    }
    auto loss = (*loss_)(preds, batch.targets, dp_ ? &dp_->loss_normalizer() : nullptr);
    if (dp_) dp_->share_loss_items(loss.items);
    scaler_->scale(loss.total).backward();
    const auto items = dp_ ? dp_->loss_items() : loss.items;
    if (stepping) {
      step();
      last_opt_step_ = ni;
    }
    mloss = (mloss * i + items.to(mloss.device())) / (i + 1);
    r.train_images += batch.images.size(0) * (dp_ ? dp_->world() : 1);

    const auto now = std::chrono::steady_clock::now();
    if (tty) {
      if (std::chrono::duration<double>(now - last_print).count() > 0.5) {
        print(false);
        last_print = now;
      }
    } else if ((i + 1) * 4 >= next_report * total && next_report < 4) {
      ++i;
      print(false);
      --i;
      ++next_report;
    }
  }
  cuda_synchronize(device_);
  if (dp_) dp_->end_epoch(model_, epoch);
  r.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print(true);
  auto ml = mloss.to(torch::kCPU);
  for (int k = 0; k < 3; ++k) r.train_loss[k] = ml[k].item<double>();
  const auto& groups = optimizer_->groups();
  for (int k = 0; k < 3; ++k) r.lr[k] = groups[k].lr;
  const auto mem = cuda_memory(device_);
  log_info("epoch {}: {} images in {:.2f} s ({:.1f} img/s){}", epoch, r.train_images, r.train_seconds,
           r.train_images / std::max(1e-9, r.train_seconds),
           device_.is_cuda() ? fmt::format(", GPU memory peak {:.2f} GB reserved, {:.2f} GB allocated",
                                           mem.peak_reserved_gb, mem.peak_allocated_gb)
                             : std::string());
  return r;
}

void Trainer::write_results(const EpochResult& r) {
  const fs::path csv = fs::path(opts_.save_dir) / "results.csv";
  const bool header = !fs::exists(csv);
  std::ofstream out(csv, std::ios::app);
  const std::vector<std::string> keys = {"epoch",           "train/box_loss",       "train/obj_loss",
                                         "train/cls_loss",  "metrics/precision",    "metrics/recall",
                                         "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss",
                                         "val/obj_loss",    "val/cls_loss",         "x/lr0",
                                         "x/lr1",           "x/lr2"};
  if (header) {
    std::string h;
    for (size_t k = 0; k < keys.size(); ++k) h += fmt::format("{:>20}{}", keys[k], k + 1 < keys.size() ? "," : "\n");
    out << h;
  }
  const std::vector<double> vals = {static_cast<double>(r.epoch), r.train_loss[0], r.train_loss[1], r.train_loss[2],
                                    r.val.mp,   r.val.mr,   r.val.map50,  r.val.map,
                                    r.val.loss[0], r.val.loss[1], r.val.loss[2], r.lr[0], r.lr[1], r.lr[2]};
  std::string line;
  for (size_t k = 0; k < vals.size(); ++k) line += fmt::format("{:>20.5g}{}", vals[k], k + 1 < vals.size() ? "," : "\n");
  out << line;
  out.close();
  try {
    // Written beside, then renamed: a reader (or a killed run) never sees half a file.
    const fs::path png = fs::path(opts_.save_dir) / "results.png", tmp = fs::path(opts_.save_dir) / "results.tmp.png";
    plot_results_csv(csv.string(), tmp.string());
    fs::rename(tmp, png);
  } catch (const std::exception& e) {
    log_warn("results.png not written: {}", e.what());
  }
}

void Trainer::save(const std::string& path, int epoch) {
  // Fault injection for the data-parallel tests: a slow disk under rank 0.
  if (const char* delay = std::getenv("YOLO_TEST_SAVE_DELAY_MS"))
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
  CheckpointMeta meta;
  meta.epoch = epoch;
  meta.best_fitness = best_fitness_;
  meta.ema_updates = ema_->updates();
  meta.last_opt_step = last_opt_step_;
  meta.cfg_name = model_->cfg.name;
  meta.cfg_yaml = model_->cfg.yaml_text;
  meta.names = data_.names;
  meta.hyp_yaml = hyp_to_yaml(hyp_);
  meta.opt_yaml = options_to_yaml(opts_);
  save_checkpoint(path, model_, &ema_->model(), optimizer_.get(), scaler_.get(), meta);
}

std::vector<EpochResult> Trainer::run() {
  std::vector<EpochResult> results;
  log_info("Starting training for {} epochs...", opts_.epochs);
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path wdir = fs::path(opts_.save_dir) / "weights";
  ValOptions vopt;
  vopt.amp = amp_;
  vopt.names = data_.names;
  if (dp_)
    vopt.combine_shards = [this, max_det = vopt.nms.max_det](DetectionStats& stats, torch::Tensor& loss_sum, int& batches) {
      dp_->combine_validation(stats, loss_sum, batches, *val_ds_, max_det);
    };
  const bool primary = !group_ || group_->primary();
  for (int epoch = start_epoch_; epoch < opts_.epochs; ++epoch) {
    EpochResult r = train_epoch(epoch);
    const bool final_epoch = epoch + 1 == opts_.epochs;
    if (!opts_.noval || final_epoch) {
      vopt.verbose = final_epoch;
      r.val = validate(ema_->model(), *val_ds_, *val_loader_, device_, vopt, loss_.get());
    }
    r.fitness = fitness(r.val.map50, r.val.map);
    if (r.fitness > best_fitness_) best_fitness_ = r.fitness;
    if (primary) write_results(r);
    if (primary && (!opts_.nosave || final_epoch)) {
      save((wdir / "last.pt").string(), epoch);
      // train.py's rule: best.pt whenever this epoch's fitness equals the best
      // so far, ties included (so epoch 0 always writes one, --noval too).
      if (best_fitness_ == r.fitness) save((wdir / "best.pt").string(), epoch);
    }
    results.push_back(r);
  }
  if (dp_) dp_->barrier();  // every rank ends after rank 0's last checkpoint
  const double hours = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 3600;
  log_info("\n{} epochs completed in {:.3f} hours.", opts_.epochs - start_epoch_, hours);
  log_info("Results saved to {}", opts_.save_dir);
  return results;
}

}  // namespace yolo
