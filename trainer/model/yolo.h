// YOLOv5 (v6.0+, P3-P5) built from a model YAML, like YOLOv5's parse_model.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace yolo {

// One row of the YAML's backbone/head: [from, number, module, args].
struct LayerSpec {
  std::vector<int> from;
  int number = 1;
  std::string module;
  std::vector<std::string> args;  // raw scalars; "nc"/"anchors" are resolved by the builder
};

struct ModelConfig {
  std::string name;  // e.g. "yolov5s" (from the file name)
  std::string yaml_text;
  int nc = 80;
  double depth_multiple = 1.0;
  double width_multiple = 1.0;
  std::vector<std::vector<float>> anchors;  // per level, pixels, pairs flattened
  std::vector<LayerSpec> layers;
};

// Resolve a --cfg (or --hyp) name: the path itself, or a bundled file of
// trainer/models by name (".yaml" optional).
std::string resolve_model_path(const std::string& cfg);
ModelConfig load_model_config(const std::string& path);
ModelConfig parse_model_config(const std::string& yaml_text, const std::string& name);

// A layer fed by one or more earlier outputs.
class LayerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward_layer(const std::vector<torch::Tensor>& x) = 0;
};

// A replacement for BatchNorm2d's forward in training mode, over the module's own
// parameters and buffers (synchronised BatchNorm across data-parallel ranks).
using BatchNormForward = std::function<torch::Tensor(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x)>;

// Conv2d (no bias) + BatchNorm2d + SiLU.
class ConvImpl : public LayerImpl {
 public:
  ConvImpl(int c1, int c2, int k = 1, int s = 1, int p = -1);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor forward_layer(const std::vector<torch::Tensor>& x) override { return forward(x[0]); }
  // Folds the BatchNorm (its running statistics) into the convolution, which
  // gains a bias, and removes it: fuse_conv_and_bn. Inference only.
  void fuse();
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};  // null once fused
  BatchNormForward bn_forward;  // empty: bn's own
};
TORCH_MODULE(Conv);

class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int c1, int c2, bool shortcut, double e = 0.5);
  torch::Tensor forward(const torch::Tensor& x);
  Conv cv1{nullptr}, cv2{nullptr};
  bool add = false;
};
TORCH_MODULE(Bottleneck);

class C3Impl : public LayerImpl {
 public:
  C3Impl(int c1, int c2, int n, bool shortcut);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor forward_layer(const std::vector<torch::Tensor>& x) override { return forward(x[0]); }
  Conv cv1{nullptr}, cv2{nullptr}, cv3{nullptr};
  torch::nn::Sequential m{nullptr};
};
TORCH_MODULE(C3);

class SPPFImpl : public LayerImpl {
 public:
  SPPFImpl(int c1, int c2, int k);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor forward_layer(const std::vector<torch::Tensor>& x) override { return forward(x[0]); }
  Conv cv1{nullptr}, cv2{nullptr};
  torch::nn::MaxPool2d m{nullptr};
};
TORCH_MODULE(SPPF);

class UpsampleLayerImpl : public LayerImpl {
 public:
  explicit UpsampleLayerImpl(double scale) : scale_(scale) {}
  torch::Tensor forward_layer(const std::vector<torch::Tensor>& x) override;

 private:
  double scale_;
};
TORCH_MODULE(UpsampleLayer);

class ConcatImpl : public LayerImpl {
 public:
  explicit ConcatImpl(int dim) : dim_(dim) {}
  torch::Tensor forward_layer(const std::vector<torch::Tensor>& x) override { return torch::cat(x, dim_); }

 private:
  int dim_;
};
TORCH_MODULE(Concat);

// Detection head: one 1x1 conv per level; anchors stored in grid units.
class DetectImpl : public torch::nn::Module {
 public:
  DetectImpl(int nc, const std::vector<std::vector<float>>& anchors_px, const std::vector<int>& ch);
  // Raw (bs, na, ny, nx, no) per level.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& x);
  // Inference boxes (bs, N, no): xywh in input pixels, sigmoid obj and classes.
  torch::Tensor decode(const std::vector<torch::Tensor>& raw);
  void initialize_biases();

  int nc, no, nl, na;
  torch::Tensor anchors;  // (nl, na, 2) grid units (buffer)
  torch::Tensor stride;   // (nl) float (buffer)
  torch::nn::ModuleList m{nullptr};
};
TORCH_MODULE(Detect);

class YoloModelImpl : public torch::nn::Module {
 public:
  explicit YoloModelImpl(const ModelConfig& cfg, int ch = 3);
  // Training output: raw predictions per level.
  std::vector<torch::Tensor> forward(torch::Tensor x);
  Detect detect() const { return detect_; }

  // YOLOv5's summary numbers: module count (as Python's model.modules()),
  // parameters and parameters requiring gradients.
  int64_t layer_count();
  int64_t parameter_count();
  int64_t gradient_count();
  std::string summary_line();

  // Convert 4-D weights to channels_last (faster convolutions on CUDA).
  void to_channels_last();
  // Conv + BN fusion of every Conv, as YOLOv5's Model.fuse() for validation.
  void fuse();
  // Every Conv's BatchNorm runs through `f` in training mode (empty: BatchNorm2d's own).
  void set_batch_norm_forward(const BatchNormForward& f);

  ModelConfig cfg;

 private:
  torch::nn::ModuleList model_{nullptr};
  std::vector<LayerImpl*> layers_;
  std::vector<std::vector<int>> from_;
  std::vector<bool> keep_;  // outputs that later layers read
  Detect detect_{nullptr};
  std::vector<int> detect_from_;
};
TORCH_MODULE(YoloModel);

int make_divisible(double x, int divisor);

}  // namespace yolo
