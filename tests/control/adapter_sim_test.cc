// The residual adapter in the simulator (issue 13, Layer 2): on a workload its base policy never
// saw, the adapter improves the reward over the frozen base (and costs nothing over a base that is
// already right). Same config, same seed, adapter on against adapter off (recovery off in both,
// so that only Layer 2 differs).
//
// The base (tests/control/data/helm-policy-biased.json) is mis-tuned on purpose: one linear layer
// whose argmax is the action nearest 0.1 x (0.8 - split), i.e. it steers every node toward a split
// of 0.8 and holds it there. On the demo cluster (configs/sim/demo-cpu.yaml: 2 CPU-calibrated
// nodes, kuairand-like users) at 400 requests/s the P99 grows with the split (about 12.6 ms at 0.1,
// 16 ms at 0.5, 22 ms at 0.9 under static splits), so 0.8 is a poor split. The adapter has to
// learn a negative correction large enough to pull the split down against the base.
//
// What is compared: control::Reward of every node's every window (the very controller that
// control.policy helm builds, installed through SimulatorHooks::controller so that the test can
// read each decision's reward), averaged over the second half of the run; and, cluster-wide, the
// windows' P99 over the SLO and the share of requests within the SLO.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "helm/config/config.h"
#include "helm/control/helm_controller.h"
#include "helm/control/options.h"
#include "helm/sim/simulator.h"

namespace helm::sim {
namespace {

constexpr double kSloMs = 20;
constexpr char kBiased[] = "tests/control/data/helm-policy-biased.json";
constexpr char kTrained[] = "configs/policies/helm-base-v1.json";

config::Config Scenario(const std::string& policy, double initial_split, bool adapter) {
  const std::string root = HELM_SOURCE_DIR;
  auto loaded = config::LoadConfigFile(root + "/configs/sim/demo-cpu.yaml");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  config::Config c = loaded.ok() ? *loaded : config::Config();
  c.simulator.calibration_path = root + "/configs/calibration/cpu-dev.json";
  // The time outside the nodes as a constant 400 us, as this scenario was set up (the demo's
  // transport calibration draws it per answer). The adapter learns from noisy windows (P99 of ~200
  // answers each), so its path depends on the run's timing: over 80 s (10 probe cycles) it ended
  // at 0.57, 0.39, 0.65 and 0.88 at simulator seeds 0-3 (rewards 13%, 13%, 4% better and 3%
  // worse than the base's); over 200 s (25 cycles) at 0.12, 0.52, 0.12 and 0.61 (23%, 19%, 22%
  // and 6% better). This test runs seed 0 for 200 s.
  c.simulator.transport_path.clear();
  c.simulator.rpc_overhead_us = 400;
  c.simulator.duration_s = 200;
  c.workload.duration_s = 200;
  c.workload.phases = "steady:200";
  c.workload.rate_per_s = 400;
  c.workload.slo_ms = kSloMs;
  c.pool.initial_split = initial_split;
  c.control = control::ControlOptions();  // the defaults, whatever the demo's heuristic uses
  c.control.policy = "helm";
  c.control.policy_path = root + "/" + policy;
  c.control.interval_ms = 500;
  c.control.slo_ms = kSloMs;
  c.control.recovery = false;
  c.control.adapter = adapter;
  // A faster learner than the defaults (this run has 400 windows: 25 probe cycles), with room to
  // pull against the base: the base asks for up to +0.05 at a split of 0.35.
  c.control.adapter_bound = 0.1;
  c.control.adapter_step = 0.1;
  c.control.adapter_probe = 0.02;
  return c;
}

// The helm controller, recording the reward of every window it judges.
class Recording final : public control::SplitController {
 public:
  Recording(std::unique_ptr<control::HelmController> helm, std::vector<double>* rewards)
      : helm_(std::move(helm)), rewards_(rewards) {}
  double Decide(const serve::StatsWindow& window) override {
    const double target = helm_->Decide(window);
    rewards_->push_back(helm_->last_decision().reward.reward);
    return target;
  }
  std::string name() const override { return helm_->name(); }
  int64_t reversals() const override { return helm_->reversals(); }
  std::string mode() const override { return helm_->mode(); }

 private:
  std::unique_ptr<control::HelmController> helm_;
  std::vector<double>* rewards_;
};

struct Outcome {
  double reward = 0;        // mean over nodes of the second half of their windows' rewards
  double latency_term = 0;  // cluster-wide: mean min(P99 / SLO, 4) over the second half
  double slo = 0;
  double last_split = 0;  // node 0's target in the last window
};

Outcome RunScenario(const std::string& policy_file, double initial_split, bool adapter) {
  const config::Config config = Scenario(policy_file, initial_split, adapter);
  auto policy = control::LoadPolicy(config.control.policy_path);
  EXPECT_TRUE(policy.ok()) << policy.status();
  if (!policy.ok()) return {};
  std::vector<std::vector<double>> rewards(config.simulator.num_nodes);
  SimulatorHooks hooks;
  hooks.controller = [&](int node, const control::FeatureScales& scales) {
    return std::unique_ptr<control::SplitController>(
        new Recording(std::make_unique<control::HelmController>(
                          *policy, scales, config.control, config.pool.r_min, config.pool.r_max),
                      &rewards[node]));
  };
  auto sim = Simulator::Create(config);
  EXPECT_TRUE(sim.ok()) << sim.status();
  if (!sim.ok()) return {};
  auto result = (*sim)->Run(hooks);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok() || result->windows.empty()) return {};
  Outcome o;
  for (const std::vector<double>& r : rewards) {
    EXPECT_GT(r.size(), 300u) << "a decision every 500 ms for 200 s";
    double sum = 0;
    for (size_t i = r.size() / 2; i < r.size(); ++i) sum += r[i];
    o.reward += sum / double(r.size() - r.size() / 2) / double(rewards.size());
  }
  const size_t n = result->windows.size();
  for (size_t i = n / 2; i < n; ++i) {
    o.latency_term += std::min(result->windows[i].p99_ms / kSloMs, 4.0);
  }
  o.latency_term /= double(n - n / 2);
  o.slo = result->slo_attainment();
  o.last_split = result->windows.back().target.empty() ? 0 : result->windows.back().target[0];
  return o;
}

TEST(AdapterInTheSimulator, ImprovesTheRewardOverAMisTunedFrozenBase) {
  const Outcome base = RunScenario(kBiased, 0.8, false);
  const Outcome adapted = RunScenario(kBiased, 0.8, true);
  std::printf(
      "reward (later half): base %.3f, adapter %.3f; P99/SLO %.3f vs %.3f; SLO %.4f vs %.4f; "
      "split at the end %.2f vs %.2f\n",
      base.reward, adapted.reward, base.latency_term, adapted.latency_term, base.slo, adapted.slo,
      base.last_split, adapted.last_split);
  EXPECT_NEAR(base.last_split, 0.8, 0.05) << "the frozen base holds its poor split";
  EXPECT_LT(adapted.last_split, 0.6) << "the adapter pulled the split down";
  // Rewards are negative: at least 10% better.
  ASSERT_LT(base.reward, 0);
  EXPECT_GT(adapted.reward, 0.9 * base.reward);
  EXPECT_LT(adapted.latency_term, base.latency_term);
  EXPECT_GE(adapted.slo, base.slo);
}

// The trained base (helm-train's helm-base-v1, trained on GPU cost profiles and 60 GiB pools) on
// this CPU cluster of 256 MiB pools, which it never saw, from a split of 0.8: it finds the low
// splits this workload wants by itself, so there is little left to gain; the adapter's probes must
// not cost reward (within 5%) nor pull the split away from where the base settles.
TEST(AdapterInTheSimulator, CostsNothingOverAWellTunedTrainedBase) {
  const Outcome base = RunScenario(kTrained, 0.8, false);
  const Outcome adapted = RunScenario(kTrained, 0.8, true);
  std::printf(
      "reward (later half): base %.3f, adapter %.3f; P99/SLO %.3f vs %.3f; SLO %.4f vs %.4f; "
      "split at the end %.2f vs %.2f\n",
      base.reward, adapted.reward, base.latency_term, adapted.latency_term, base.slo, adapted.slo,
      base.last_split, adapted.last_split);
  EXPECT_LT(base.last_split, 0.3) << "the trained base leaves 0.8 for the low splits";
  EXPECT_NEAR(adapted.last_split, base.last_split, 0.1);
  ASSERT_LT(base.reward, 0);
  EXPECT_GT(adapted.reward, 1.05 * base.reward);
}

}  // namespace
}  // namespace helm::sim
