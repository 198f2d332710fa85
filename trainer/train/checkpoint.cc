#include "train/checkpoint.h"

#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "train/amp.h"
#include "train/optimizer.h"

namespace yolo {

namespace fs = std::filesystem;

namespace {

void write_module(torch::serialize::OutputArchive& ar, const std::string& prefix, YoloModel& m) {
  for (const auto& kv : m->named_parameters(true)) ar.write(prefix + kv.key(), kv.value().detach().to(torch::kCPU));
  for (const auto& kv : m->named_buffers(true))
    ar.write(prefix + kv.key(), kv.value().detach().to(torch::kCPU), /*is_buffer=*/true);
}

// `path` only names the file in errors.
bool read_module(torch::serialize::InputArchive& ar, const std::string& path, const std::string& prefix, YoloModel& m,
                 bool must) {
  torch::NoGradGuard no_grad;
  // Parameters and buffers alike: present (or, unless `must`, the whole prefix absent) and of the model's shape.
  auto read_all = [&](const auto& named, bool is_buffer) {
    for (const auto& kv : named) {
      torch::Tensor t;
      if (!ar.try_read(prefix + kv.key(), t, is_buffer)) {
        if (must) throw std::runtime_error(fmt::format("checkpoint {} lacks {}{}", path, prefix, kv.key()));
        return false;
      }
      if (t.sizes() != kv.value().sizes())
        throw std::runtime_error(fmt::format("checkpoint {}: {}{} has shape {}, the model has {}", path, prefix,
                                             kv.key(), fmt::join(t.sizes(), "x"), fmt::join(kv.value().sizes(), "x")));
      kv.value().copy_(t);
    }
    return true;
  };
  return read_all(m->named_parameters(true), false) && read_all(m->named_buffers(true), true);
}

std::string read_string(torch::serialize::InputArchive& ar, const std::string& key) {
  c10::IValue v;
  if (!ar.try_read(key, v)) return {};
  return v.toStringRef();
}

}  // namespace

void save_checkpoint(const std::string& path, YoloModel& model, YoloModel* ema, SGD* opt, const GradScaler* scaler,
                     const CheckpointMeta& meta) {
  torch::serialize::OutputArchive ar;
  write_module(ar, "model.", model);
  if (ema) write_module(ar, "ema.", *ema);
  if (opt) {
    auto& bufs = opt->momentum_buffers();
    for (size_t g = 0; g < bufs.size(); ++g)
      for (size_t i = 0; i < bufs[g].size(); ++i)
        ar.write("optimizer." + std::to_string(g) + "." + std::to_string(i), bufs[g][i].detach().to(torch::kCPU),
                 true);
  }
  if (scaler) ar.write("scaler", scaler->state(), true);
  ar.write("meta.epoch", c10::IValue(meta.epoch));
  ar.write("meta.best_fitness", c10::IValue(meta.best_fitness));
  ar.write("meta.ema_updates", c10::IValue(meta.ema_updates));
  ar.write("meta.last_opt_step", c10::IValue(meta.last_opt_step));
  ar.write("meta.cfg_name", c10::IValue(meta.cfg_name));
  ar.write("meta.cfg_yaml", c10::IValue(meta.cfg_yaml));
  std::string names;
  for (const auto& n : meta.names) names += n + "\n";
  ar.write("meta.names", c10::IValue(names));
  ar.write("meta.hyp_yaml", c10::IValue(meta.hyp_yaml));
  ar.write("meta.opt_yaml", c10::IValue(meta.opt_yaml));
  const std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  fs::rename(tmp, path);
}

CheckpointReader::CheckpointReader(const std::string& path) : path_(path) {
  if (!fs::exists(path)) throw std::runtime_error("checkpoint not found: " + path);
  ar_.load_from(path);
  auto& ar = ar_;
  CheckpointMeta& m = meta_;
  c10::IValue v;
  if (ar.try_read("meta.epoch", v)) m.epoch = v.toInt();
  if (ar.try_read("meta.best_fitness", v)) m.best_fitness = v.toDouble();
  if (ar.try_read("meta.ema_updates", v)) m.ema_updates = v.toInt();
  if (ar.try_read("meta.last_opt_step", v)) m.last_opt_step = v.toInt();
  m.cfg_name = read_string(ar, "meta.cfg_name");
  m.cfg_yaml = read_string(ar, "meta.cfg_yaml");
  if (m.cfg_yaml.empty()) throw std::runtime_error("not a yolov5-train checkpoint (no model config): " + path);
  const std::string names = read_string(ar, "meta.names");
  size_t start = 0;
  for (size_t pos; (pos = names.find('\n', start)) != std::string::npos; start = pos + 1)
    m.names.push_back(names.substr(start, pos - start));
  m.hyp_yaml = read_string(ar, "meta.hyp_yaml");
  m.opt_yaml = read_string(ar, "meta.opt_yaml");
}

CheckpointMeta read_checkpoint_meta(const std::string& path) { return CheckpointReader(path).meta(); }

void CheckpointReader::load_weights(YoloModel& model, const std::string& which) {
  if (which == "ema" && read_module(ar_, path_, "ema.", model, false)) return;
  read_module(ar_, path_, "model.", model, true);
}

void CheckpointReader::load_training_state(SGD* opt, GradScaler* scaler) {
  auto& ar = ar_;
  if (opt) {
    auto& groups = opt->groups();
    auto& bufs = opt->momentum_buffers();
    bufs.assign(groups.size(), {});
    for (size_t g = 0; g < groups.size(); ++g) {
      for (size_t i = 0; i < groups[g].params.size(); ++i) {
        torch::Tensor t;
        if (!ar.try_read("optimizer." + std::to_string(g) + "." + std::to_string(i), t, true)) break;
        if (t.sizes() != groups[g].params[i].sizes())
          throw std::runtime_error(fmt::format("checkpoint {}: momentum buffer {}.{} has shape {}, its parameter {}",
                                               path_, g, i, fmt::join(t.sizes(), "x"),
                                               fmt::join(groups[g].params[i].sizes(), "x")));
        bufs[g].push_back(t.to(groups[g].params[i].device()));
      }
      if (bufs[g].size() != groups[g].params.size()) bufs[g].clear();
    }
  }
  if (scaler) {
    torch::Tensor s;
    if (ar.try_read("scaler", s, true)) scaler->load_state(s);
  }
}

YoloModel load_model_from_checkpoint(const std::string& path, CheckpointMeta* meta) {
  CheckpointReader ckpt(path);
  *meta = ckpt.meta();
  auto cfg = parse_model_config(meta->cfg_yaml, meta->cfg_name);
  if (!meta->names.empty()) cfg.nc = static_cast<int>(meta->names.size());
  YoloModel model(cfg);
  ckpt.load_weights(model, "ema");
  return model;
}

}  // namespace yolo
