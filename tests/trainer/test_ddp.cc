// Data-parallel pieces that one process can check: the sampler's shards, a loader shard's
// samples, images outside the RAM share, the loss's global denominators, synchronised
// BatchNorm against BatchNorm2d, and the gradient reducer over a one-rank communicator.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "data/dataset.h"
#include "data/loader.h"
#include "ddp/gradient_reducer.h"
#include "ddp/process_group.h"
#include "ddp/sampler.h"
#include "ddp/sync_batch_norm.h"
#include "loss/compute_loss.h"
#include "scratch_dir.h"

using namespace yolo;
namespace fs = std::filesystem;

namespace {

// Made once per process and removed at exit.
const fs::path& shapes_dataset() {
  static ScratchDir root("ddp-unit-shapes");
  static bool made = false;
  if (!made) {
    make_shapes_dataset(root.path(), "--train 12 --val 2 --img 96 --seed 5");
    made = true;
  }
  return root.path();
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::shared_ptr<ddp::ProcessGroup> one_rank_group() {
  ringlink::Options o;
  o.rank = 0;
  o.world_size = 1;
  o.master_addr = "127.0.0.1";
  o.master_port = free_port();
  o.job_token = "ddp-unit-test";
  return std::make_shared<ddp::ProcessGroup>(o);
}

torch::Tensor default_anchors() {
  auto a = torch::tensor({10.f, 13.f, 16.f, 30.f, 33.f, 23.f, 30.f, 61.f, 62.f, 45.f, 59.f, 119.f, 116.f, 90.f, 156.f,
                          198.f, 373.f, 326.f})
               .view({3, 3, 2});
  return a / torch::tensor({8.f, 16.f, 32.f}).view({3, 1, 1});
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

// Rank r's share of a RAM-cached 96 px dataset.
DatasetOptions rank_share(int r, int world) {
  DatasetOptions o;
  o.img_size = 96;
  o.threads = 2;
  o.cache = CacheMode::ram;
  o.share_rank = r;
  o.share_world = world;
  o.split_name = "train";
  return o;
}

}  // namespace

TEST(DdpSampler, RanksAtStepKHoldTheSingleProcessBatchK) {
  for (size_t n : {64u, 67u, 5u}) {
    const auto perm = epoch_permutation(n, 7, 3, true);
    EXPECT_EQ(perm, epoch_permutation(n, 7, 3, true));
    for (int world : {1, 2, 3, 4}) {
      for (int local : {1, 2, 4}) {
        const size_t B = static_cast<size_t>(world * local);
        std::vector<ShardOrder> shards;
        for (int r = 0; r < world; ++r) shards.push_back(shard_order(perm, r, world, true));
        const size_t len = (n + world - 1) / world;
        for (const auto& s : shards) ASSERT_EQ(s.indices.size(), len);
        const size_t steps = (len + local - 1) / local, single_steps = (n + B - 1) / B;
        EXPECT_EQ(steps, single_steps) << "n " << n << " world " << world;
        for (size_t k = 0; k < steps; ++k) {
          std::multiset<size_t> got, want;
          for (const auto& s : shards)
            for (size_t j = k * local; j < std::min(len, (k + 1) * local); ++j) {
              got.insert(s.positions[j]);
              EXPECT_EQ(s.indices[j], perm[s.positions[j] % n]);
            }
          for (size_t p = k * B; p < std::min(n, (k + 1) * B); ++p) want.insert(p);
          // Full batches match exactly; the last one is padded (positions past n repeat the head).
          std::multiset<size_t> got_real;
          for (size_t p : got) {
            if (p < n) got_real.insert(p);
          }
          EXPECT_EQ(got_real, want) << "n " << n << " world " << world << " local " << local << " step " << k;
          if ((k + 1) * B <= n) {
            EXPECT_EQ(got.size(), B);
          }
        }
      }
    }
  }
}

TEST(DdpSampler, ValidationShardsSeeEveryImageOnce) {
  const auto perm = epoch_permutation(17, 0, 0, false);
  std::multiset<size_t> seen;
  for (int r = 0; r < 3; ++r)
    for (size_t i : shard_order(perm, r, 3, false).indices) seen.insert(i);
  EXPECT_EQ(seen.size(), 17u);
  EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()).size(), 17u);
  EXPECT_THROW(shard_order(perm, 3, 3, false), std::invalid_argument);
}

// Augmentation is keyed by the position in the global order, not by the rank.
TEST(DdpLoader, TwoRanksBuildTheSingleProcessSamples) {
  const auto root = shapes_dataset();
  auto cfg = load_dataset_config((root / "shapes.yaml").string());
  Dataset all(cfg.train, cfg.nc(), 96, 2, "train");
  LoaderOptions lo;
  lo.batch_size = 4;
  lo.img_size = 96;
  lo.workers = 0;
  lo.augment = true;
  lo.shuffle = true;
  lo.seed = 11;
  BatchLoader single(all, lo);
  single.start_epoch(2);
  std::vector<std::unique_ptr<Dataset>> ds;
  std::vector<std::unique_ptr<BatchLoader>> ranks;
  for (int r = 0; r < 2; ++r) {
    ds.push_back(std::make_unique<Dataset>(cfg.train, cfg.nc(), rank_share(r, 2)));
    LoaderOptions o = lo;
    o.batch_size = 2;
    o.rank = r;
    o.world_size = 2;
    ranks.push_back(std::make_unique<BatchLoader>(*ds.back(), o));
    ranks.back()->start_epoch(2);
  }
  ASSERT_EQ(single.num_batches(), ranks[0]->num_batches());
  for (int k = 0; k < single.num_batches(); ++k) {
    Batch whole, part[2];
    ASSERT_TRUE(single.next(&whole));
    for (int r = 0; r < 2; ++r) ASSERT_TRUE(ranks[r]->next(&part[r]));
    // Rank r's image j is position k*4 + r + 2j of the epoch.
    for (int r = 0; r < 2; ++r)
      for (int j = 0; j < 2; ++j) {
        const int64_t p = r + 2 * j;
        EXPECT_EQ(part[r].indices[j], whole.indices[p]);
        EXPECT_TRUE(torch::equal(part[r].images[j], whole.images[p])) << "batch " << k << " rank " << r << " image " << j;
        auto mine = part[r].targets.index({part[r].targets.select(1, 0) == j}).narrow(1, 1, 5);
        auto theirs = whole.targets.index({whole.targets.select(1, 0) == p}).narrow(1, 1, 5);
        EXPECT_TRUE(torch::equal(mine, theirs));
      }
  }
}

TEST(DdpDataset, ImagesOutsideTheRamShareDecodeToTheCachedPixels) {
  const auto root = shapes_dataset();
  auto cfg = load_dataset_config((root / "shapes.yaml").string());
  Dataset all(cfg.train, cfg.nc(), 96, 2, "train");
  Dataset half(cfg.train, cfg.nc(), rank_share(1, 2));
  ASSERT_EQ(all.size(), half.size());
  ASSERT_EQ(half.cache(), CacheMode::ram);
  for (size_t i = 0; i < all.size(); ++i) {
    const auto a = all.image(i), b = half.image(i);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->w, b->w);
    EXPECT_EQ(a->h, b->h);
    EXPECT_EQ(a->px, b->px) << "image " << i;
    EXPECT_EQ(all.labels(i), half.labels(i));
  }
  // Cached images are shared, the others decoded afresh on every call.
  EXPECT_EQ(half.image(1).get(), half.image(1).get());
  EXPECT_NE(half.image(0).get(), half.image(0).get());
}

// Images another rank failed to decode are dropped here too, so the ranks' datasets agree.
TEST(DdpDataset, ImagesAnyRankFailedAreDroppedEverywhere) {
  const auto root = shapes_dataset();
  auto cfg = load_dataset_config((root / "shapes.yaml").string());
  Dataset all(cfg.train, cfg.nc(), 96, 2, "train");
  auto opts = rank_share(0, 2);
  size_t seen_count = 0;
  opts.agree_failed = [&](const std::vector<size_t>& failed, size_t count) {
    EXPECT_TRUE(failed.empty());  // rank 0's share decodes
    seen_count = count;
    return std::vector<size_t>{1, 4};  // as if rank 1 had failed on these
  };
  Dataset mine(cfg.train, cfg.nc(), opts);
  EXPECT_EQ(seen_count, all.size());
  ASSERT_EQ(mine.size(), all.size() - 2);
  std::vector<size_t> kept;
  for (size_t i = 0; i < all.size(); ++i)
    if (i != 1 && i != 4) kept.push_back(i);
  for (size_t j = 0; j < mine.size(); ++j) {
    EXPECT_EQ(mine.path(j), all.path(kept[j]));
    EXPECT_EQ(mine.labels(j), all.labels(kept[j]));
    EXPECT_EQ(mine.image(j)->px, all.image(kept[j])->px) << "image " << j;
  }
}

// Two halves of a batch with the whole batch's denominators: losses, items and gradients add up.
TEST(DdpLoss, SharesWithGlobalDenominatorsSumToTheWholeBatch) {
  torch::manual_seed(3);
  const int nc = 3;
  ComputeLoss loss(default_anchors(), nc, LossGains{});
  const std::vector<std::pair<int64_t, int64_t>> grid = {{8, 8}, {4, 4}, {2, 2}};
  std::vector<torch::Tensor> preds;
  for (const auto& [ny, nx] : grid) preds.push_back(torch::randn({4, 3, ny, nx, 5 + nc}).requires_grad_(true));
  // Images 0 and 2 have objects, 1 has none, 3 has two (different counts per half).
  auto targets = torch::tensor({0.f, 1.f, 0.3f, 0.6f, 0.2f, 0.3f,  //
                                2.f, 0.f, 0.5f, 0.5f, 0.4f, 0.4f,  //
                                3.f, 2.f, 0.7f, 0.2f, 0.1f, 0.2f,  //
                                3.f, 1.f, 0.2f, 0.8f, 0.3f, 0.1f})
                     .view({4, 6});
  auto whole = loss(preds, targets);
  whole.total.backward();

  std::vector<torch::Tensor> half_preds[2];
  torch::Tensor half_targets[2];
  for (int h = 0; h < 2; ++h) {
    for (auto& p : preds) half_preds[h].push_back(p.detach().narrow(0, 2 * h, 2).clone().requires_grad_(true));
    auto t = targets.index({(targets.select(1, 0) >= 2 * h) & (targets.select(1, 0) < 2 * h + 2)}).clone();
    t.select(1, 0).sub_(2 * h);
    half_targets[h] = t;
  }
  LossNormalizer norm;
  norm.batch_size = 4;
  norm.positives.assign(3, 0.0);
  for (int h = 0; h < 2; ++h) {
    const auto c = loss.count_positives(half_targets[h], grid);
    for (int l = 0; l < 3; ++l) norm.positives[l] += static_cast<double>(c[l]);
  }
  auto sum_total = torch::zeros({});
  auto sum_items = torch::zeros({3});
  for (int h = 0; h < 2; ++h) {
    auto r = loss(half_preds[h], half_targets[h], &norm);
    r.total.backward();
    sum_total = sum_total + r.total.detach();
    sum_items += r.items;
  }
  EXPECT_LT(max_rel(sum_total, whole.total.detach()), 1e-6);
  EXPECT_LT(max_rel(sum_items, whole.items), 1e-6);
  for (size_t l = 0; l < preds.size(); ++l) {
    auto g = torch::cat({half_preds[0][l].grad(), half_preds[1][l].grad()});
    EXPECT_LT(max_rel(g, preds[l].grad()), 1e-5) << "level " << l;
  }
  // Each half alone, with its own denominators, is not a share of the whole.
  auto alone = loss(half_preds[0], half_targets[0]);
  EXPECT_GT(std::abs(alone.total.item<double>() * 2 - whole.total.item<double>()), 1e-3);
}

TEST(DdpSyncBatchNorm, OneProcessMatchesBatchNorm2d) {
  torch::manual_seed(1);
  auto bn_ref = torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(6).eps(1e-3).momentum(0.03));
  auto bn_sync = torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(6).eps(1e-3).momentum(0.03));
  {
    torch::NoGradGuard g;
    bn_ref->weight.uniform_(0.5, 1.5);
    bn_ref->bias.uniform_(-0.5, 0.5);
    bn_sync->weight.copy_(bn_ref->weight);
    bn_sync->bias.copy_(bn_ref->bias);
  }
  auto forward = ddp::sync_batch_norm(nullptr);
  for (int it = 0; it < 3; ++it) {
    auto x = (torch::randn({4, 6, 5, 7}) * 3 + 2).requires_grad_(true);
    auto x2 = x.detach().clone().requires_grad_(true);
    auto w = torch::randn({4, 6, 5, 7});
    auto y_ref = bn_ref->forward(x);
    auto y = forward(*bn_sync, x2);
    EXPECT_LT(max_rel(y, y_ref), 1e-5);
    (y_ref * w).sum().backward();
    (y * w).sum().backward();
    EXPECT_LT(max_rel(x2.grad(), x.grad()), 1e-4);
    EXPECT_LT(max_rel(bn_sync->weight.grad(), bn_ref->weight.grad()), 1e-4);
    EXPECT_LT(max_rel(bn_sync->bias.grad(), bn_ref->bias.grad()), 1e-5);
    EXPECT_LT(max_rel(bn_sync->running_mean, bn_ref->running_mean), 1e-5);
    EXPECT_LT(max_rel(bn_sync->running_var, bn_ref->running_var), 1e-5);
    EXPECT_EQ(bn_sync->num_batches_tracked.item<int64_t>(), bn_ref->num_batches_tracked.item<int64_t>());
  }
}

// Buckets, views and hooks over a one-rank communicator (the sum over one rank is the identity).
TEST(DdpReducer, BucketsInReverseOrderFilledByBackwardAndAccumulated) {
  auto group = one_rank_group();
  torch::manual_seed(0);
  // Four layers of 0.25 MiB of weights each (65536 floats), registered in order.
  auto net = torch::nn::Sequential(torch::nn::Linear(256, 256), torch::nn::Tanh(), torch::nn::Linear(256, 256),
                                   torch::nn::Tanh(), torch::nn::Linear(256, 256), torch::nn::Tanh(),
                                   torch::nn::Linear(256, 256));
  auto params = net->parameters();
  ddp::GradientReducer reducer(*group, params, 512 * 1024);
  // First bucket at most 1 MiB, then 0.5 MiB caps: the last layer's weight and bias come first.
  ASSERT_GE(reducer.num_buckets(), 4u);
  size_t total = 0;
  for (size_t b = 0; b < reducer.num_buckets(); ++b) total += reducer.bucket_size_bytes(b);
  EXPECT_EQ(total, reducer.total_bytes());
  EXPECT_EQ(total, static_cast<size_t>(4 * (256 * 256 + 256)) * 4);

  auto x = torch::randn({8, 256});
  auto reference = [&](int passes) {
    std::vector<torch::Tensor> g;
    auto copy = torch::nn::Sequential(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(net->clone()));
    for (int k = 0; k < passes; ++k) copy->forward(x * (k + 1)).pow(2).sum().backward();
    for (auto& p : copy->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto want = reference(2);
  // Accumulate without communication, then a communicating pass.
  reducer.prepare(false);
  net->forward(x).pow(2).sum().backward();
  EXPECT_EQ(reducer.bytes_started(), 0u);
  reducer.prepare(true);
  net->forward(x * 2).pow(2).sum().backward();
  EXPECT_GT(reducer.bytes_started(), 0u);  // started from the hooks, before finish()
  const auto s = reducer.finish();
  EXPECT_EQ(s.bytes, total);
  EXPECT_EQ(static_cast<size_t>(s.buckets), reducer.num_buckets());
  EXPECT_EQ(s.started_during_backward, s.buckets);
  for (size_t k = 0; k < params.size(); ++k) EXPECT_LT(max_rel(params[k].grad(), want[k]), 1e-6) << "param " << k;

  // zero_grad's set-to-none: the next prepare() attaches fresh zeroed views.
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  reducer.prepare(true);
  for (auto& p : params) EXPECT_EQ(p.grad().abs().sum().item<double>(), 0.0);
  net->forward(x).pow(2).sum().backward();
  reducer.finish();
  const auto once = reference(1);
  for (size_t k = 0; k < params.size(); ++k) EXPECT_LT(max_rel(params[k].grad(), once[k]), 1e-6);
}

TEST(DdpReducer, BucketZeroIsOneAllreduceAfterBackward) {
  auto group = one_rank_group();
  auto net = torch::nn::Sequential(torch::nn::Linear(64, 64), torch::nn::Tanh(), torch::nn::Linear(64, 8));
  ddp::GradientReducer reducer(*group, net->parameters(), 0);
  EXPECT_EQ(reducer.num_buckets(), 1u);
  reducer.prepare(true);
  net->forward(torch::randn({4, 64})).sum().backward();
  EXPECT_EQ(reducer.bytes_started(), 0u);
  const auto s = reducer.finish();
  EXPECT_EQ(s.buckets, 1);
  EXPECT_EQ(s.started_during_backward, 0);
  EXPECT_THROW(reducer.finish(), std::logic_error);
}

TEST(DdpDevice, LocalRankPicksItsEntryOfTheList) {
  EXPECT_EQ(ddp::rank_device("cpu,cpu", 1, 2), torch::Device(torch::kCPU));
  EXPECT_EQ(ddp::rank_device("cpu", 3, 4), torch::Device(torch::kCPU));
  try {
    ddp::rank_device("cpu,cpu", 2, 3);
    ADD_FAILURE() << "a list shorter than the local ranks was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lists 2 devices for 3 ranks on this host (local rank 2 has none)"),
              std::string::npos)
        << e.what();
  }
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(ddp::rank_device("", 1, 2), torch::Device(torch::kCPU));
    EXPECT_THROW(ddp::rank_device("0,1", 1, 2), std::runtime_error);  // names the missing CUDA
  } else {
    EXPECT_EQ(ddp::rank_device("", 0, 1), torch::Device(torch::kCUDA, 0));
  }
}
