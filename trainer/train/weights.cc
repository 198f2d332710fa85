#include "train/weights.h"

#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/version.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include "train/checkpoint.h"
#include "util/log.h"

namespace yolo {

namespace {

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// torch.save writes an OrderedDict for a state_dict. LibTorch's pickle loader
// reads it as of PyTorch 2.6; older ones turn it into None and fail.
bool pickles_an_ordered_dict(caffe2::serialize::PyTorchStreamReader& zip) {
  if (!zip.hasRecord("data.pkl")) return false;
  auto [data, size] = zip.getRecord("data.pkl");
  const std::string pkl(static_cast<const char*>(data.get()), size);
  return pkl.find("collections\nOrderedDict") != std::string::npos;
}

PretrainedWeights read_state_dict(const std::string& path, caffe2::serialize::PyTorchStreamReader& zip) {
  PretrainedWeights w;
  w.path = path;
  c10::IValue v;
  try {
    v = torch::pickle_load(read_bytes(path));
  } catch (const c10::Error& e) {
    if (pickles_an_ordered_dict(zip) && (TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 6)))
      throw std::runtime_error(fmt::format(
          "--weights {}: it holds an OrderedDict (torch.save(model.state_dict(), f)), which the pickle loader of "
          "LibTorch {} cannot read (2.6 can). Save a plain dict instead, torch.save(dict(model.state_dict()), f), as "
          "trainer/tools/export-ultralytics-weights does",
          path, TORCH_VERSION));
    throw std::runtime_error(fmt::format("--weights {}: LibTorch's pickle loader cannot read it: {}", path,
                                         e.what_without_backtrace()));
  }
  if (!v.isGenericDict())
    throw std::runtime_error(fmt::format("--weights {}: expected a state_dict (a dict of tensors), found {}", path,
                                         v.tagKind()));
  for (const auto& kv : v.toGenericDict()) {
    if (!kv.key().isString() || !kv.value().isTensor()) continue;  // e.g. metadata entries
    w.tensors.emplace_back(kv.key().toStringRef(), kv.value().toTensor());
  }
  if (w.tensors.empty()) throw std::runtime_error("--weights " + path + ": the dict holds no named tensors");
  return w;
}

}  // namespace

PretrainedWeights read_pretrained_weights(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw std::runtime_error("--weights " + path + ": file not found");
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error&) {
    throw std::runtime_error("--weights " + path +
                             ": not a PyTorch zip archive (a yolov5-train checkpoint, or a state_dict saved by "
                             "torch.save with the default zip format)");
  }
  // TorchScript archives (what this trainer's checkpoints are) carry constants.pkl; torch.save files do not.
  if (!zip->hasRecord("constants.pkl")) return read_state_dict(path, *zip);
  zip.reset();
  CheckpointMeta meta;
  YoloModel m = load_model_from_checkpoint(path, &meta);
  PretrainedWeights w;
  w.path = path;
  w.is_checkpoint = true;
  w.cfg_name = meta.cfg_name;
  w.cfg_yaml = meta.cfg_yaml;
  for (const auto& kv : m->named_parameters(true)) w.tensors.emplace_back(kv.key(), kv.value().detach());
  for (const auto& kv : m->named_buffers(true)) w.tensors.emplace_back(kv.key(), kv.value().detach());
  return w;
}

WeightTransfer transfer_weights(YoloModel& model, const PretrainedWeights& weights,
                                const std::vector<std::string>& exclude) {
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> source(weights.tensors.begin(), weights.tensors.end());
  WeightTransfer r;
  auto visit = [&](const std::string& name, torch::Tensor& dst) {
    if (name == "model." + std::to_string(model->cfg.layers.size() - 1) + ".stride") return;
    ++r.total;
    auto it = source.find(name);
    if (it == source.end()) return;
    for (const auto& x : exclude)
      if (name.find(x) != std::string::npos) {
        r.skipped.push_back(name + " (excluded)");
        return;
      }
    if (it->second.sizes() != dst.sizes()) {
      r.skipped.push_back(fmt::format("{} ({} in the file, {} here)", name, fmt::join(it->second.sizes(), "x"),
                                      fmt::join(dst.sizes(), "x")));
      return;
    }
    dst.copy_(it->second);
    ++r.transferred;
  };
  for (auto& kv : model->named_parameters(true)) visit(kv.key(), kv.value());
  for (auto& kv : model->named_buffers(true)) visit(kv.key(), kv.value());
  return r;
}

ModelConfig training_model_config(const std::string& cfg, const PretrainedWeights* weights) {
  if (!cfg.empty()) return load_model_config(resolve_model_path(cfg));
  if (weights && weights->is_checkpoint) return parse_model_config(weights->cfg_yaml, weights->cfg_name);
  if (weights) log_info("--weights {} is a state_dict (no model definition): building yolov5s.yaml; --cfg chooses another",
                        weights->path);
  return load_model_config(resolve_model_path("yolov5s.yaml"));
}

WeightTransfer load_pretrained(YoloModel& model, const PretrainedWeights& weights, bool cfg_given) {
  std::vector<std::string> exclude;
  if (cfg_given) exclude.push_back("anchor");
  auto r = transfer_weights(model, weights, exclude);
  log_info("Transferred {}/{} items from {}", r.transferred, r.total, weights.path);
  if (!r.skipped.empty()) {
    std::string list;
    for (size_t i = 0; i < r.skipped.size() && i < 8; ++i) list += (i ? ", " : "") + r.skipped[i];
    if (r.skipped.size() > 8) list += fmt::format(", ... ({} in all)", r.skipped.size());
    log_info("  not transferred: {}", list);
  }
  if (r.transferred * 2 < r.total)
    log_warn("--weights {}: only {} of the model's {} tensors matched by name and shape; is --cfg the architecture "
             "these weights were trained with?",
             weights.path, r.transferred, r.total);
  return r;
}

}  // namespace yolo
