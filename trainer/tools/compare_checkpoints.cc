// compare-checkpoints: how far two yolov5-train checkpoints are apart, tensor by tensor, for
// the model and its EMA (e.g. the last.pt of N data-parallel ranks against one process's).
// Per tensor the relative difference is max|a - b| / max|b|; the largest is printed with its
// name, with the relative L2 distance ||a - b|| / ||b|| over all tensors. With --rtol the exit
// status is 1 when some tensor's difference exceeds it.

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "train/checkpoint.h"

namespace {

struct Summary {
  double worst = 0, num = 0, den = 0;
  std::string worst_name;
  int tensors = 0, over = 0;
};

void compare(const std::string& which, yolo::YoloModel& a, yolo::YoloModel& b, double rtol, bool verbose, Summary& s) {
  auto pa = a->named_parameters(true), ba = a->named_buffers(true);
  auto one = [&](const std::string& key, const torch::Tensor* x, const torch::Tensor& y) {
    const std::string name = which + "." + key;
    if (!x) throw std::runtime_error(fmt::format("{} is in the second checkpoint only", name));
    if (x->sizes() != y.sizes()) throw std::runtime_error(fmt::format("{} differs in shape", name));
    double d = 0;
    if (y.is_floating_point()) {
      auto xd = x->to(torch::kDouble), yd = y.to(torch::kDouble);
      s.num += (xd - yd).pow(2).sum().item<double>();
      s.den += yd.pow(2).sum().item<double>();
      const double scale = yd.abs().max().item<double>();
      d = (xd - yd).abs().max().item<double>() / (scale > 0 ? scale : 1.0);
    } else {
      d = torch::equal(*x, y) ? 0.0 : INFINITY;
    }
    ++s.tensors;
    if (rtol > 0 && d > rtol) ++s.over;
    if (d > s.worst || s.worst_name.empty()) s.worst = d, s.worst_name = name;
    if (verbose) fmt::print("{:<60} {:.3e}\n", name, d);
  };
  for (const auto& kv : b->named_parameters(true)) one(kv.key(), pa.find(kv.key()), kv.value());
  for (const auto& kv : b->named_buffers(true)) one(kv.key(), ba.find(kv.key()), kv.value());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Compares two yolov5-train checkpoints tensor by tensor (model and EMA)"};
  std::string a, b;
  double rtol = 0;
  bool verbose = false;
  app.add_option("A", a, "checkpoint")->required()->check(CLI::ExistingFile);
  app.add_option("B", b, "reference checkpoint")->required()->check(CLI::ExistingFile);
  app.add_option("--rtol", rtol, "fail (exit 1) when a tensor's max|a - b| / max|b| exceeds this");
  app.add_flag("-v,--verbose", verbose, "print every tensor's relative difference");
  CLI11_PARSE(app, argc, argv);
  try {
    Summary s;
    yolo::CheckpointMeta ma, mb;
    for (const char* which : {"model", "ema"}) {
      // load_model_from_checkpoint gives the EMA's weights; the model's are loaded over them.
      auto A = yolo::load_model_from_checkpoint(a, &ma), B = yolo::load_model_from_checkpoint(b, &mb);
      if (std::string(which) == "model") {
        yolo::CheckpointReader(a).load_weights(A, "model");
        yolo::CheckpointReader(b).load_weights(B, "model");
      }
      compare(which, A, B, rtol, verbose, s);
    }
    fmt::print("{} tensors (model and EMA): largest max|a - b| / max|b| {:.3e} ({}); ||a - b|| / ||b|| {:.3e}\n",
               s.tensors, s.worst, s.worst_name, s.den > 0 ? std::sqrt(s.num / s.den) : 0.0);
    if (rtol > 0) {
      fmt::print("{} of them above --rtol {:g}\n", s.over, rtol);
      return s.over ? 1 : 0;
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "compare-checkpoints: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
