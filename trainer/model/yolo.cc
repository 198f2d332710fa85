#include "model/yolo.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "trainer_config.h"
#include "util/log.h"

namespace fs = std::filesystem;

namespace yolo {

int make_divisible(double x, int divisor) { return static_cast<int>(std::ceil(x / divisor)) * divisor; }

// ---------------------------------------------------------------------------
// Config

std::string resolve_model_path(const std::string& cfg) {
  std::vector<std::string> names = {cfg};
  if (fs::path(cfg).extension() != ".yaml") names.push_back(cfg + ".yaml");
  std::error_code ec;
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& n : names) {
    if (fs::exists(n)) return n;
    const fs::path base = fs::path(n).filename();
    for (const fs::path& dir : {fs::path(YOLO_MODELS_DIR), exe_dir, exe_dir / "models"}) {
      if (!dir.empty() && fs::exists(dir / base)) return (dir / base).string();
    }
  }
  throw std::runtime_error("file not found: " + cfg + " (neither a path nor a bundled file in " YOLO_MODELS_DIR ")");
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read model config: " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_model_config(ss.str(), fs::path(path).stem().string());
}

ModelConfig parse_model_config(const std::string& yaml_text, const std::string& name) {
  ModelConfig cfg;
  cfg.name = name;
  cfg.yaml_text = yaml_text;
  YAML::Node root = YAML::Load(yaml_text);
  cfg.nc = root["nc"].as<int>();
  cfg.depth_multiple = root["depth_multiple"].as<double>();
  cfg.width_multiple = root["width_multiple"].as<double>();
  for (const auto& level : root["anchors"]) cfg.anchors.push_back(level.as<std::vector<float>>());
  for (const char* section : {"backbone", "head"}) {
    for (const auto& row : root[section]) {
      if (!row.IsSequence() || row.size() != 4) throw std::runtime_error("model config: bad layer row in " + name);
      LayerSpec spec;
      if (row[0].IsSequence()) {
        spec.from = row[0].as<std::vector<int>>();
      } else {
        spec.from = {row[0].as<int>()};
      }
      spec.number = row[1].as<int>();
      spec.module = row[2].as<std::string>();
      for (const auto& a : row[3]) spec.args.push_back(a.IsScalar() ? a.as<std::string>() : std::string("<seq>"));
      cfg.layers.push_back(spec);
    }
  }
  return cfg;
}

// ---------------------------------------------------------------------------
// Modules

ConvImpl::ConvImpl(int c1, int c2, int k, int s, int p) {
  if (p < 0) p = k / 2;  // "same" padding for odd kernels
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, k).stride(s).padding(p).bias(false)));
  // PyTorch defaults here; YOLOv5 switches BN to eps 1e-3 / momentum 0.03 after
  // the stride probe (see YoloModelImpl), which this model reproduces.
  bn = register_module("bn", torch::nn::BatchNorm2d(c2));
}

torch::Tensor ConvImpl::forward(const torch::Tensor& x) {
  auto y = conv(x);
  if (!bn) return torch::silu(y);
  return torch::silu(bn_forward && is_training() ? bn_forward(*bn, y) : bn(y));
}

void ConvImpl::fuse() {
  if (!bn) return;
  torch::NoGradGuard no_grad;
  const auto& w = conv->weight;
  // BN(conv(x)) = scale * conv(x) + (bias - mean * scale), scale = gamma / sqrt(var + eps).
  auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  const auto& o = conv->options;
  torch::nn::Conv2d fused(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                              .stride(o.stride())
                              .padding(o.padding())
                              .dilation(o.dilation())
                              .groups(o.groups())
                              .bias(true));
  fused->to(w.device(), w.scalar_type());
  fused->weight.copy_(w * scale.view({-1, 1, 1, 1}));
  fused->bias.copy_(bn->bias - bn->running_mean * scale);
  for (auto& p : fused->parameters()) p.set_requires_grad(false);
  conv = replace_module("conv", fused);
  unregister_module("bn");
  bn = nullptr;
}

BottleneckImpl::BottleneckImpl(int c1, int c2, bool shortcut, double e) {
  const int c_ = static_cast<int>(c2 * e);
  cv1 = register_module("cv1", Conv(c1, c_, 1, 1));
  cv2 = register_module("cv2", Conv(c_, c2, 3, 1));
  add = shortcut && c1 == c2;
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto y = cv2(cv1(x));
  return add ? x + y : y;
}

C3Impl::C3Impl(int c1, int c2, int n, bool shortcut) {
  const int c_ = static_cast<int>(c2 * 0.5);
  cv1 = register_module("cv1", Conv(c1, c_, 1, 1));
  cv2 = register_module("cv2", Conv(c1, c_, 1, 1));
  cv3 = register_module("cv3", Conv(2 * c_, c2, 1, 1));
  m = register_module("m", torch::nn::Sequential());
  for (int i = 0; i < n; ++i) m->push_back(Bottleneck(c_, c_, shortcut, 1.0));
}

torch::Tensor C3Impl::forward(const torch::Tensor& x) {
  return cv3(torch::cat({m->forward(cv1(x)), cv2(x)}, 1));
}

SPPFImpl::SPPFImpl(int c1, int c2, int k) {
  const int c_ = c1 / 2;
  cv1 = register_module("cv1", Conv(c1, c_, 1, 1));
  cv2 = register_module("cv2", Conv(c_ * 4, c2, 1, 1));
  m = register_module("m", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(k).stride(1).padding(k / 2)));
}

torch::Tensor SPPFImpl::forward(const torch::Tensor& x) {
  auto a = cv1(x);
  auto y1 = m(a);
  auto y2 = m(y1);
  return cv2(torch::cat({a, y1, y2, m(y2)}, 1));
}

torch::Tensor UpsampleLayerImpl::forward_layer(const std::vector<torch::Tensor>& x) {
  namespace F = torch::nn::functional;
  return F::interpolate(x[0], F::InterpolateFuncOptions()
                                  .scale_factor(std::vector<double>{scale_, scale_})
                                  .mode(torch::kNearest)
                                  .recompute_scale_factor(false));
}

DetectImpl::DetectImpl(int nc_, const std::vector<std::vector<float>>& anchors_px, const std::vector<int>& ch)
    : nc(nc_), no(nc_ + 5), nl(static_cast<int>(anchors_px.size())), na(static_cast<int>(anchors_px[0].size() / 2)) {
  auto a = torch::empty({nl, na, 2});
  for (int i = 0; i < nl; ++i)
    for (int j = 0; j < na; ++j) {
      a[i][j][0] = anchors_px[i][2 * j];
      a[i][j][1] = anchors_px[i][2 * j + 1];
    }
  anchors = register_buffer("anchors", a);
  stride = register_buffer("stride", torch::ones({nl}));
  m = register_module("m", torch::nn::ModuleList());
  for (int c : ch) m->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(c, na * no, 1)));
}

std::vector<torch::Tensor> DetectImpl::forward(const std::vector<torch::Tensor>& x) {
  std::vector<torch::Tensor> out;
  out.reserve(nl);
  for (int i = 0; i < nl; ++i) {
    auto y = m[i]->as<torch::nn::Conv2d>()->forward(x[i]);
    const auto bs = y.size(0), ny = y.size(2), nx = y.size(3);
    out.push_back(y.view({bs, na, no, ny, nx}).permute({0, 1, 3, 4, 2}).contiguous());
  }
  return out;
}

torch::Tensor DetectImpl::decode(const std::vector<torch::Tensor>& raw) {
  std::vector<torch::Tensor> z;
  for (int i = 0; i < nl; ++i) {
    auto p = raw[i].to(torch::kFloat).sigmoid();
    const auto bs = p.size(0), ny = p.size(2), nx = p.size(3);
    auto opts = torch::TensorOptions().device(p.device()).dtype(torch::kFloat);
    auto yv = torch::arange(ny, opts).view({ny, 1}).expand({ny, nx});
    auto xv = torch::arange(nx, opts).view({1, nx}).expand({ny, nx});
    auto grid = torch::stack({xv, yv}, -1).view({1, 1, ny, nx, 2}) - 0.5;
    const double s = stride[i].item<double>();
    auto anchor_grid = (anchors[i] * s).to(p.device()).view({1, na, 1, 1, 2});
    auto xy = (p.narrow(-1, 0, 2) * 2 + grid) * s;
    auto wh = (p.narrow(-1, 2, 2) * 2).pow(2) * anchor_grid;
    z.push_back(torch::cat({xy, wh, p.narrow(-1, 4, no - 4)}, -1).view({bs, -1, no}));
  }
  return torch::cat(z, 1);
}

void DetectImpl::initialize_biases() {
  // Prior of ~8 objects per 640 image and 0.6 / nc class probability (YOLOv5).
  torch::NoGradGuard no_grad;
  for (int i = 0; i < nl; ++i) {
    auto conv = m[i]->as<torch::nn::Conv2d>();
    auto b = conv->bias.view({na, no});
    const double s = stride[i].item<double>();
    b.select(1, 4).add_(std::log(8.0 / std::pow(640.0 / s, 2)));
    b.narrow(1, 5, nc).add_(std::log(0.6 / (nc - 0.99999)));
  }
}

// ---------------------------------------------------------------------------
// Model

namespace {

int arg_int(const std::vector<std::string>& args, size_t i, int dflt) {
  if (i >= args.size() || args[i] == "None") return dflt;
  return std::stoi(args[i]);
}

bool arg_bool(const std::vector<std::string>& args, size_t i, bool dflt) {
  if (i >= args.size()) return dflt;
  const auto& a = args[i];
  return !(a == "False" || a == "false" || a == "0");
}

}  // namespace

YoloModelImpl::YoloModelImpl(const ModelConfig& config, int ch_in) : cfg(config) {
  model_ = register_module("model", torch::nn::ModuleList());
  const double gd = cfg.depth_multiple, gw = cfg.width_multiple;
  const int na = static_cast<int>(cfg.anchors.at(0).size() / 2);
  const int no = na * (cfg.nc + 5);
  std::vector<int> ch;  // output channels of each layer
  auto in_ch = [&](int f) { return f < 0 ? (ch.empty() ? ch_in : ch[ch.size() + f]) : ch.at(f); };
  keep_.assign(cfg.layers.size(), false);

  for (size_t i = 0; i < cfg.layers.size(); ++i) {
    const auto& L = cfg.layers[i];
    int n = L.number > 1 ? std::max(static_cast<int>(std::lround(L.number * gd)), 1) : L.number;
    std::vector<int> from;
    for (int f : L.from) {
      const int abs_f = f < 0 ? static_cast<int>(i) + f : f;
      from.push_back(abs_f);
      if (f != -1) keep_.at(abs_f) = true;
    }
    const int c1 = in_ch(L.from[0]);
    int c2 = 0;
    std::shared_ptr<torch::nn::Module> mod;
    if (L.module == "Conv") {
      c2 = arg_int(L.args, 0, 0);
      if (c2 != no) c2 = make_divisible(c2 * gw, 8);
      auto conv = Conv(c1, c2, arg_int(L.args, 1, 1), arg_int(L.args, 2, 1), arg_int(L.args, 3, -1));
      mod = conv.ptr();
      layers_.push_back(conv.get());
    } else if (L.module == "C3") {
      c2 = make_divisible(arg_int(L.args, 0, 0) * gw, 8);
      auto c3 = C3(c1, c2, n, arg_bool(L.args, 1, true));
      mod = c3.ptr();
      layers_.push_back(c3.get());
    } else if (L.module == "SPPF") {
      c2 = make_divisible(arg_int(L.args, 0, 0) * gw, 8);
      auto sppf = SPPF(c1, c2, arg_int(L.args, 1, 5));
      mod = sppf.ptr();
      layers_.push_back(sppf.get());
    } else if (L.module == "nn.Upsample" || L.module == "Upsample") {
      c2 = c1;
      auto up = UpsampleLayer(static_cast<double>(arg_int(L.args, 1, 2)));
      mod = up.ptr();
      layers_.push_back(up.get());
    } else if (L.module == "Concat") {
      for (int f : L.from) c2 += in_ch(f);
      auto cat = Concat(arg_int(L.args, 0, 1));
      mod = cat.ptr();
      layers_.push_back(cat.get());
    } else if (L.module == "Detect") {
      if (i + 1 != cfg.layers.size()) throw std::runtime_error("model config: Detect must be the last layer");
      std::vector<int> chs;
      for (int f : L.from) chs.push_back(in_ch(f));
      detect_ = Detect(cfg.nc, cfg.anchors, chs);
      mod = detect_.ptr();
      layers_.push_back(nullptr);
      detect_from_ = from;
      for (int f : from) keep_.at(f) = true;
    } else {
      throw std::runtime_error("model config: unsupported module " + L.module);
    }
    model_->push_back(mod);
    from_.push_back(from);
    ch.push_back(c2);
  }
  if (!detect_) throw std::runtime_error("model config: no Detect layer");

  // Strides from a probe forward pass, as YOLOv5 does (it runs in training
  // mode, so BN running statistics see one batch of zeros at momentum 0.1).
  {
    torch::NoGradGuard no_grad;
    const int s = 256;
    auto out = forward(torch::zeros({1, ch_in, s, s}));
    for (int i = 0; i < detect_->nl; ++i) detect_->stride[i] = static_cast<double>(s) / out[i].size(2);
  }
  // check_anchor_order: anchors must grow with stride.
  {
    auto area = detect_->anchors.prod(-1).mean(-1);
    auto da = (area[-1] - area[0]).item<float>();
    auto ds = (detect_->stride[-1] - detect_->stride[0]).item<float>();
    if ((da > 0) != (ds > 0)) detect_->anchors.copy_(detect_->anchors.flip(0));
  }
  detect_->anchors.div_(detect_->stride.view({-1, 1, 1}));
  detect_->initialize_biases();
  // initialize_weights: BN eps 1e-3, momentum 0.03.
  for (auto& module : modules(false)) {
    if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      bn->options.eps(1e-3);
      bn->options.momentum(0.03);
    }
  }
}

std::vector<torch::Tensor> YoloModelImpl::forward(torch::Tensor x) {
  std::vector<torch::Tensor> y(layers_.size());
  std::vector<torch::Tensor> inputs;
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    inputs.clear();
    for (int f : from_[i]) inputs.push_back(f == static_cast<int>(i) - 1 ? x : y[f]);
    x = layers_[i]->forward_layer(inputs);
    if (keep_[i]) y[i] = x;
  }
  std::vector<torch::Tensor> heads;
  for (int f : detect_from_) heads.push_back(y[f]);
  return detect_->forward(heads);
}

int64_t YoloModelImpl::layer_count() {
  // Python counts each module once; YOLOv5's Conv layers share one SiLU
  // instance, which this model applies functionally, hence the +1.
  return static_cast<int64_t>(modules(true).size()) + 1;
}

int64_t YoloModelImpl::parameter_count() {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

int64_t YoloModelImpl::gradient_count() {
  int64_t n = 0;
  for (const auto& p : parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

std::string YoloModelImpl::summary_line() {
  std::string title = cfg.name;
  if (title.rfind("yolov5", 0) == 0 && title.size() > 6) title = "YOLOv5" + title.substr(6);
  return fmt::format("{} summary: {} layers, {} parameters, {} gradients", title, layer_count(), parameter_count(),
                     gradient_count());
}

void YoloModelImpl::fuse() {
  for (auto& m : modules(false))
    if (auto* c = m->as<ConvImpl>()) c->fuse();
}

void YoloModelImpl::to_channels_last() {
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

void YoloModelImpl::set_batch_norm_forward(const BatchNormForward& f) {
  for (auto& m : modules(/*include_self=*/false))
    if (auto* c = m->as<ConvImpl>()) c->bn_forward = f;
}

}  // namespace yolo
