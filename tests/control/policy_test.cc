#include "helm/control/policy.h"

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "control/window_support.h"
#include "gtest/gtest.h"

namespace helm::control {
namespace {

serve::StatsWindow Window(double split, int64_t arrivals, int64_t p99_us) {
  serve::StatsWindow w = SteadyWindow(split, arrivals, p99_us);
  SetCacheCounters(w, 800, 5000, 2500);
  w.kv.recomputed_tokens = 2500;
  w.emb.h2d_bytes = 200 * 512;
  w.emb.fetch_ns = 250'000'000;  // a quarter of the 1 s window fetching misses
  return w;
}

FeatureScales Scales() {
  FeatureScales s;
  s.slo_us = 50'000;
  s.pool_bytes = 1 << 30;
  s.emb_row_bytes = 512;
  s.kv_token_bytes = 6144;
  s.queue_capacity = 1024;
  return s;
}

TEST(FeatureExtractor, NormalisesEachFeatureAsTheHeaderSays) {
  FeatureExtractor x(Scales());
  const Features f = x.Extract(Window(0.4, 1000, 100'000));
  EXPECT_FLOAT_EQ(f[0], 0.4f);
  EXPECT_FLOAT_EQ(f[1], 0.0f);
  EXPECT_FLOAT_EQ(f[3], 0.8f);
  EXPECT_FLOAT_EQ(f[4], 0.25f) << "the window's share spent fetching misses, not their bytes";
  EXPECT_FLOAT_EQ(f[5], 0.5f);
  EXPECT_NEAR(f[7], std::log1p(1000.0) / 12, 1e-6);
  EXPECT_NEAR(f[8], std::log1p(1000.0) / 12, 1e-6);
  EXPECT_NEAR(f[9], 0, 1e-6);
  EXPECT_NEAR(f[14], 2.0 / 4, 0.01) << "P99 at twice the SLO";
  EXPECT_NEAR(f[15], 1.0, 0.01) << "every answer over the SLO";
  for (float v : f) {
    EXPECT_GE(v, -1.0f);
    EXPECT_LE(v, 1.0f);
  }
  EXPECT_FLOAT_EQ(f[16], 0.0f) << "no ghost hits: growing EMB would save nothing";
  EXPECT_FLOAT_EQ(f[18], 0.0f);
  // A burst: the short average rises faster than the long one, and the slope turns positive.
  const Features g = x.Extract(Window(0.4, 5000, 10'000));
  EXPECT_GT(g[7], g[8]);
  EXPECT_GT(g[9], 0.1f);
  EXPECT_NEAR(g[15], 0.0, 0.01);
}

TEST(FeatureExtractor, GrowthGainsAreTheTimeEachGhostSays) {
  serve::StatsWindow w = Window(0.4, 1000, 100'000);
  w.emb.misses = 200;
  w.emb.ghost_hits = 50;  // a quarter of the misses: a quarter of the 250 ms fetching
  w.requests.compute_us = 650'000;
  w.requests.computed_rows = 4000;  // (650 - 250) ms / 4000 rows = 0.1 ms a row
  w.kv.ghost_hit_tokens = 900;      // 90 ms of recompute
  EXPECT_NEAR(FeatureExtractor::EmbGrowthGain(w), 0.0625, 1e-9);
  EXPECT_NEAR(FeatureExtractor::KvGrowthGain(w), 0.09, 1e-9);
  FeatureExtractor x(Scales());
  const Features f = x.Extract(w);
  EXPECT_NEAR(f[16], 0.25, 1e-6);
  EXPECT_NEAR(f[17], 0.3, 1e-6);
  EXPECT_NEAR(f[18], (0.0625 - 0.09) / (0.0625 + 0.09), 1e-6) << "KV pays more: negative";
}

// The reference forward: plain double-precision maths, written independently of Mlp::Forward.
std::vector<double> Reference(const Mlp& mlp, const std::vector<double>& x0) {
  std::vector<double> x = x0;
  for (size_t i = 0; i < mlp.layers().size(); ++i) {
    const Mlp::Layer& l = mlp.layers()[i];
    std::vector<double> y(l.out);
    for (int o = 0; o < l.out; ++o) {
      double acc = l.bias[o];
      for (int k = 0; k < l.in; ++k) acc += double(l.weight[size_t(o) * l.in + k]) * x[k];
      y[o] = i + 1 == mlp.layers().size() ? acc : std::tanh(acc);
    }
    x = y;
  }
  return x;
}

// The hidden units' activation is a rational fit of tanh: within 1e-6 of double-precision tanh
// everywhere (every float step over [-10, 10], and far out), odd, and exactly +-1 beyond +-9.
TEST(Mlp, TanhIsWithinAMillionthOfTanh) {
  double worst = 0;
  for (float x = -10.0f; x <= 10.0f; x = std::nextafter(x, 11.0f) + 1e-4f) {
    worst = std::max(worst, std::abs(double(Mlp::Tanh(x)) - std::tanh(double(x))));
    ASSERT_EQ(Mlp::Tanh(-x), -Mlp::Tanh(x)) << x;
  }
  EXPECT_LE(worst, 1e-6);
  EXPECT_EQ(Mlp::Tanh(0.0f), 0.0f);
  EXPECT_NEAR(Mlp::Tanh(1e-3f), std::tanh(1e-3), 1e-9);
  EXPECT_NEAR(Mlp::Tanh(1e30f), 1.0, 1e-6);
  EXPECT_NEAR(Mlp::Tanh(-1e30f), -1.0, 1e-6);
}

TEST(Mlp, ForwardMatchesAReferenceAndSurvivesAJsonRoundTrip) {
  Policy p{Mlp::Random({kNumFeatures, 64, 64, 7}, 11), {-0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1}};
  auto back = ParsePolicy(PolicyToJson(p), "test");
  ASSERT_TRUE(back.ok()) << back.status();
  std::vector<float> in(kNumFeatures);
  for (int i = 0; i < kNumFeatures; ++i) in[i] = std::sin(1.7f * i);
  std::vector<float> a(7), b(7);
  p.mlp.Forward(in.data(), a.data());
  back->mlp.Forward(in.data(), b.data());
  const std::vector<double> ref = Reference(p.mlp, std::vector<double>(in.begin(), in.end()));
  for (int o = 0; o < 7; ++o) {
    EXPECT_NEAR(a[o], ref[o], 1e-5);
    EXPECT_FLOAT_EQ(a[o], b[o]);
  }
}

// Forward runs a layer in blocks of 32, 16, 8 and 4 outputs over zero padding: widths that are
// not multiples of 4, and ones that take every block size (100 = 3 x 32 + 4; 45 pads to 48 = 32 +
// 16; 29 to 32 - 3 padding lanes; 13 to 16, 3 and 1 to 4), each match the reference.
TEST(Mlp, ForwardMatchesTheReferenceAtEveryLayerWidth) {
  for (const std::vector<int>& sizes : std::vector<std::vector<int>>{
           {3, 100, 45, 1}, {7, 29, 13, 3}, {1, 1}, {kNumFeatures, 8, 24, 56, 7}}) {
    const Mlp mlp = Mlp::Random(sizes, 5);
    std::vector<float> in(sizes.front());
    for (size_t i = 0; i < in.size(); ++i) in[i] = 2.0f * std::cos(0.9f * float(i));
    std::vector<float> out(sizes.back(), -7.0f);
    mlp.Forward(in.data(), out.data());
    const std::vector<double> ref = Reference(mlp, std::vector<double>(in.begin(), in.end()));
    for (int o = 0; o < sizes.back(); ++o) {
      EXPECT_NEAR(out[o], ref[o], 1e-5) << "output " << o << " of " << sizes.back();
    }
  }
}

TEST(LoadPolicy, TheBuiltinBasePoliciesAreTheCommittedFiles) {
  // v1 reads the first 16 features (from before the ghost gains), v2 the first 19, v3 and v4 all
  // 21 (features.h).
  for (const auto& [name, inputs] :
       {std::pair<std::string, int>{"helm-base-v1", 16},
        std::pair<std::string, int>{"helm-base-v2", kFirstModelFeature},
        std::pair<std::string, int>{"helm-base-v3", kNumFeatures},
        std::pair<std::string, int>{"helm-base-v4", kNumFeatures}}) {
    absl::StatusOr<Policy> builtin = LoadPolicy("builtin:" + name);
    ASSERT_TRUE(builtin.ok()) << builtin.status();
    absl::StatusOr<Policy> file =
        LoadPolicy(std::string(HELM_SOURCE_DIR) + "/configs/policies/" + name + ".json");
    ASSERT_TRUE(file.ok()) << file.status();
    ASSERT_EQ(builtin->actions, file->actions);
    EXPECT_EQ(builtin->mlp.inputs(), inputs) << name;
    std::vector<float> in(kNumFeatures), a(builtin->mlp.outputs()), b(file->mlp.outputs());
    for (int i = 0; i < kNumFeatures; ++i) in[i] = 0.1f * static_cast<float>(i % 7) - 0.2f;
    builtin->mlp.Forward(in.data(), a.data());
    file->mlp.Forward(in.data(), b.data());
    EXPECT_EQ(a, b) << name;
  }
  absl::StatusOr<Policy> unknown = LoadPolicy("builtin:helm-base-v9");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("builtin:helm-base-v2"), std::string::npos);
}

TEST(ParsePolicy, NamesTheBadField) {
  EXPECT_NE(ParsePolicy("[]", "f").status().message().find("JSON object"), std::string::npos);
  EXPECT_NE(ParsePolicy(R"({"format":"x"})", "f").status().message().find("format"),
            std::string::npos);
  Policy p{Mlp::Random({kNumFeatures, 8, 3}, 1), {-0.1, 0, 0.1}};
  std::string json = PolicyToJson(p);
  const std::string four = R"("actions":[-0.1,0.0,0.1,0.2])";
  const size_t at = json.find(R"("actions":)");
  json.replace(at, json.find(']', at) + 1 - at, four);
  auto bad = ParsePolicy(json, "f");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("3 outputs for 4 actions"), std::string::npos)
      << bad.status();
  EXPECT_TRUE(absl::IsNotFound(LoadPolicy("/nonexistent/policy.json").status()));
  // A policy may read the first N features (features are only appended), not more than exist.
  Policy first16{Mlp::Random({16, 8, 3}, 1), {-0.1, 0, 0.1}};
  auto parsed = ParsePolicy(PolicyToJson(first16), "f");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->mlp.inputs(), 16);
  for (int n : {0, kNumFeatures + 1}) {
    std::string j = PolicyToJson(first16);
    j.replace(j.find(R"("features":16)"), 13, absl::StrCat(R"("features":)", n));
    auto refused = ParsePolicy(j, "f");
    ASSERT_FALSE(refused.ok()) << n;
    EXPECT_NE(refused.status().message().find("features: must be 1 to"), std::string::npos)
        << refused.status();
  }
}

// A policy that always picks action `index` (its last layer's bias decides).
Policy Always(int index, std::vector<double> actions) {
  Mlp::Layer l;
  l.in = kNumFeatures;
  l.out = static_cast<int>(actions.size());
  l.weight.assign(size_t(l.in) * l.out, 0.0f);
  l.bias.assign(l.out, 0.0f);
  l.bias[index] = 1.0f;
  return Policy{Mlp({l}), std::move(actions)};
}

TEST(PolicyController, SafetyRulesHoldWhateverThePolicySays) {
  ControlOptions o;
  o.max_move = 0.05;
  o.hold_windows = 3;
  // Asks for +0.5 every window: capped at +0.05, and never past r_max.
  PolicyController up(Always(1, {-0.5, 0.5}), Scales(), o, 0.1, 0.9);
  double split = 0.5;
  for (int i = 0; i < 20; ++i) {
    const double next = up.Decide(Window(split, 100, 1000));
    EXPECT_LE(next - split, 0.05 + 1e-9);
    split = next;
  }
  EXPECT_NEAR(split, 0.9, 1e-9);
  // No decision while a move is in flight.
  serve::StatsWindow moving = Window(0.5, 100, 1000);
  moving.committed_split = 0.45;
  EXPECT_DOUBLE_EQ(up.Decide(moving), 0.5);
}

TEST(PolicyController, RefusesToTurnRoundWithinTheHold) {
  ControlOptions o;
  o.hold_windows = 3;
  // A flapping policy: up below a split of 0.5, down above it (logits from feature 0, the split).
  Mlp::Layer l;
  l.in = kNumFeatures;
  l.out = 2;
  l.weight.assign(size_t(l.in) * l.out, 0.0f);
  l.weight[0] = 10.0f;              // down: 10 r - 5
  l.weight[size_t(l.in)] = -10.0f;  // up: -10 r + 5
  l.bias = {-5.0f, 5.0f};
  PolicyController c(Policy{Mlp({l}), {-0.05, 0.05}}, Scales(), o, 0.1, 0.9);
  double split = 0.48;
  int moves = 0;
  for (int i = 0; i < 40; ++i) {
    const double next = c.Decide(Window(split, 100, 1000));
    moves += std::abs(next - split) > 1e-9;
    split = next;
  }
  // Unchecked it would move every window; the hold allows one turn per hold_windows + 1.
  EXPECT_LE(moves, 40 / (o.hold_windows + 1) + 1);
  EXPECT_GT(c.refused_reversals(), 0);
  EXPECT_GT(c.reversals(), 0);
}

}  // namespace
}  // namespace helm::control
