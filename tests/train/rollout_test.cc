#include "helm/train/rollout.h"

#include <cmath>
#include <fstream>
#include <map>

#include "control/window_support.h"
#include "gtest/gtest.h"
#include "helm/sim/sweep.h"
#include "helm/train/options.h"
#include "train/test_support.h"

namespace helm::train {
namespace {

control::FeatureScales Scales() {
  control::FeatureScales s;
  s.slo_us = 50'000;
  s.pool_bytes = 1 << 30;
  s.emb_row_bytes = 512;
  s.kv_token_bytes = 6144;
  s.queue_capacity = 1024;
  return s;
}

// A settled window (no move in flight) at `split` whose answers all took `latency_us`.
serve::StatsWindow Window(double split, int64_t answers, int64_t latency_us) {
  serve::StatsWindow w = control::SteadyWindow(split, answers, latency_us);
  control::SetCacheCounters(w, 700, 4000, 1000);
  return w;
}

// A 19 -> 7 policy whose logits are its biases: softmax(biases) whatever the features.
control::Policy BiasPolicy(const std::vector<float>& biases) {
  control::Mlp::Layer l;
  l.in = control::kFirstModelFeature;
  l.out = static_cast<int>(biases.size());
  l.weight.assign(size_t(l.in) * l.out, 0.0f);
  l.bias = biases;
  return control::Policy{control::Mlp({l}), {-0.10, -0.05, -0.02, 0, 0.02, 0.05, 0.10}};
}

control::ControlOptions Options(double max_move = 0.10, int32_t hold = 2) {
  control::ControlOptions o;
  o.max_move = max_move;
  o.hold_windows = hold;
  return o;
}

TEST(TrainingController, RecordsEachStepWithTheRewardOfTheWindowItGoverned) {
  const control::Policy policy = Tiny::Random(7);
  TrainingController c(policy, Scales(), Options(), 0.1, 0.9, 42);
  // Each window's target is the controller's previous answer (no move in flight).
  serve::StatsWindow w0 = Window(0.5, 100, 20'000);
  const double t0 = c.Decide(w0);
  serve::StatsWindow w1 = Window(t0, 100, 80'000);
  const double t1 = c.Decide(w1);
  serve::StatsWindow w2 = Window(t1, 50, 200'000);
  c.Decide(w2);
  const Trajectory t = c.Finish();
  ASSERT_EQ(t.steps.size(), 2u) << "the last window's decision has no reward yet";
  ASSERT_TRUE(t.has_bootstrap);
  EXPECT_NEAR(t.steps[0].reward, control::Reward(w1, 0.5, Scales()).reward, 1e-6);
  EXPECT_NEAR(t.steps[1].reward, control::Reward(w2, t0, Scales()).reward, 1e-6);
  EXPECT_LT(t.steps[1].reward, t.steps[0].reward) << "P99 over the SLO costs reward";
  EXPECT_EQ(t.steps[0].target, t0);
  EXPECT_FLOAT_EQ(t.steps[0].features[0], 0.5f);
  EXPECT_FLOAT_EQ(t.bootstrap[0], static_cast<float>(t1));
  for (const Step& s : t.steps) {
    EXPECT_TRUE(s.decided);
    EXPECT_LE(s.log_prob, 0.0f);
  }
}

TEST(TrainingController, WithATeacherRecordsTheRulesActions) {
  // The marginal rule (step 0.05) as the teacher: KV's ghost saves 3x what EMB's does, so it lowers
  // the split a step a window; the actor (which prefers +0.10) is not sampled, only asked for its
  // log-prob.
  control::ControlOptions options = Options();
  options.policy = "marginal";
  TrainingController c(BiasPolicy({0, 0, 0, 0, 0, 0, 3}), Scales(), options, 0.1, 0.9, 42,
                       control::RewardWeights{},
                       std::make_unique<control::MarginalController>(options, 0.1, 0.9));
  double split = 0.5;
  for (int i = 0; i < 4; ++i) {
    serve::StatsWindow w = Window(split, 100, 20'000);
    control::SetGrowthGains(w, 0.01, 0.03);
    split = c.Decide(w);
  }
  EXPECT_NEAR(split, 0.3, 1e-9);
  const Trajectory t = c.Finish();
  ASSERT_EQ(t.steps.size(), 3u);
  for (const Step& s : t.steps) {
    EXPECT_TRUE(s.decided);
    EXPECT_EQ(s.action, 1) << "the action nearest the rule's -0.05";
    EXPECT_LT(s.log_prob, std::log(0.2f)) << "the actor's own log-prob of it, not its choice";
  }
}

// DAgger (train.dagger_iterations): the actor's argmax acts, the rule's choice is the label.
TEST(TrainingController, UnderDaggerTheActorActsAndTheRuleLabels) {
  control::ControlOptions options = Options();
  options.policy = "marginal";
  TrainingController c(BiasPolicy({0, 0, 0, 0, 0, 0, 3}), Scales(), options, 0.1, 0.9, 42,
                       control::RewardWeights{},
                       std::make_unique<control::MarginalController>(options, 0.1, 0.9),
                       /*actor_acts=*/true);
  double split = 0.5;
  for (int i = 0; i < 3; ++i) {
    serve::StatsWindow w = Window(split, 100, 20'000);
    control::SetGrowthGains(w, 0.01, 0.03);
    split = c.Decide(w);
  }
  EXPECT_NEAR(split, 0.8, 1e-9) << "the actor's +0.10 a window";
  const Trajectory t = c.Finish();
  ASSERT_EQ(t.steps.size(), 2u);
  for (const Step& s : t.steps) {
    EXPECT_TRUE(s.decided);
    EXPECT_EQ(s.action, 1) << "the rule's -0.05 is the label";
  }
}

TEST(TrainingController, EveryActionPassesTheSafetyGate) {
  // The policy wants +0.10 every time; the gate caps a move at 0.03 and the split at r_max 0.6.
  const control::Policy up = BiasPolicy({-20, -20, -20, -20, -20, -20, 20});
  TrainingController c(up, Scales(), Options(/*max_move=*/0.03), 0.1, 0.6, 1);
  double target = 0.5;
  for (int i = 0; i < 10; ++i) {
    const double next = c.Decide(Window(target, 100, 10'000));
    EXPECT_LE(next - target, 0.03 + 1e-9);
    EXPECT_LE(next, 0.6 + 1e-9);
    target = next;
  }
  EXPECT_NEAR(target, 0.6, 1e-9);
  // A move in flight: no decision, the target holds, the step is marked undecided.
  serve::StatsWindow moving = Window(0.55, 100, 10'000);
  moving.target_split = 0.6;
  EXPECT_NEAR(c.Decide(moving), 0.6, 1e-9);
  c.Decide(Window(0.6, 100, 10'000));
  const Trajectory t = c.Finish();
  ASSERT_EQ(t.steps.size(), 11u);
  EXPECT_FALSE(t.steps[10].decided);
  EXPECT_EQ(t.steps[10].action, 3) << "recorded as the hold action";
  EXPECT_TRUE(t.steps[9].decided);
  EXPECT_EQ(t.steps[9].action, 6);
}

TEST(TrainingController, SamplesTheSoftmaxOfTheLogitsAndIsDeterministicPerSeed) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const std::vector<float> biases = {0, 1, 0, 2, 0, 1, 0};
  const control::Policy policy = BiasPolicy(biases);
  std::vector<float> want = LogSoftmax(biases);
  auto run = [&](uint64_t s) {
    // hold_windows 0 and bounds [0, 1]: every window decides and nothing is refused.
    TrainingController c(policy, Scales(), Options(0.10, 0), 0.0, 1.0, s);
    std::vector<int32_t> actions;
    for (int i = 0; i < 4000; ++i) c.Decide(Window(0.5, 10, 1000));
    for (const Step& st : c.Finish().steps) actions.push_back(st.action);
    return actions;
  };
  const std::vector<int32_t> a = run(seed), b = run(seed), other = run(seed + 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  std::map<int32_t, int> counts;
  for (int32_t x : a) ++counts[x];
  for (int k = 0; k < 7; ++k) {
    const double p = std::exp(want[k]);
    const double sd = std::sqrt(p * (1 - p) / a.size());
    EXPECT_NEAR(double(counts[k]) / a.size(), p, 5 * sd) << "action " << k;
  }
}

TEST(Rollout, AnEpisodeRecordsEveryNodesStepsAndIsDeterministic) {
  const TrainConfig config = Tiny::Config();
  EnvSpec env = Tiny::Env();
  env.nodes = 2;
  const control::Policy actor = Tiny::Random(3);
  absl::StatusOr<EpisodeResult> a = RunEpisode(config.base, config.train, env, actor);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<EpisodeResult> b = RunEpisode(config.base, config.train, env, actor);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->trajectories.size(), 2u);
  const int64_t windows =
      static_cast<int64_t>(config.train.episode_s * 1000 / config.base.control.interval_ms);
  for (const Trajectory& t : a->trajectories) {
    EXPECT_GE(static_cast<int64_t>(t.steps.size()), windows - 2);
    EXPECT_TRUE(t.has_bootstrap);
  }
  EXPECT_GT(a->decisions, 0);
  EXPECT_LT(a->reward_sum, 0) << "rewards are costs";
  ASSERT_EQ(a->steps, b->steps);
  EXPECT_EQ(a->reward_sum, b->reward_sum);
  for (size_t n = 0; n < a->trajectories.size(); ++n) {
    for (size_t i = 0; i < a->trajectories[n].steps.size(); ++i) {
      const Step& x = a->trajectories[n].steps[i];
      const Step& y = b->trajectories[n].steps[i];
      ASSERT_EQ(x.action, y.action) << "node " << n << " step " << i;
      ASSERT_EQ(x.reward, y.reward);
      ASSERT_EQ(x.features, y.features);
    }
  }
}

// train.teacher predictive with train.features 21: the nodes keep the miniature caches, the
// predictive rule acts, and the states carry the model's view (features 19-20) that the actor
// will learn to read: its best split, which the rule then moves toward.
TEST(Rollout, ThePredictiveTeacherActsAndTheStatesCarryTheModelsView) {
  TrainConfig config = Tiny::Config();
  config.train.teacher = "predictive";
  config.train.features = control::kNumFeatures;
  config.train.profiles = {"kuairand"};  // long histories: the split matters to the model
  config.base.control.min_window_answers = 20;
  EnvSpec env = Tiny::Env();
  env.profile = "kuairand";
  env.initial_split = 0.9;
  absl::StatusOr<config::Config> c = EnvConfig(config.base, config.train, env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->control.policy, "predictive") << "the nodes keep the miniature caches";
  control::Policy actor = Tiny::Random(3);
  actor.mlp = control::Mlp::Random({control::kNumFeatures, 8, 7}, 3);
  absl::StatusOr<EpisodeResult> e =
      RunEpisode(config.base, config.train, env, actor, nullptr, Acting::kTeacher);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->trajectories.size(), 1u);
  int modelled = 0, followed = 0;
  const std::vector<Step>& steps = e->trajectories[0].steps;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    if (!s.decided || s.features[19] == 0) continue;
    ++modelled;
    // The rule moved the way its model pointed, or held where the gain was within hysteresis.
    // (The window's target is features 0 + 1, in float.)
    const double moved = s.target - (double{s.features[0]} + s.features[1]);
    const bool held = std::abs(moved) < 1e-6;
    if ((!held && moved * s.features[19] > 0) ||
        (held && s.features[20] <= config.base.control.hysteresis + 1e-6)) {
      ++followed;
    } else {
      ADD_FAILURE() << "step " << i << ": moved " << moved << ", model " << s.features[19]
                    << " for " << s.features[20];
    }
  }
  EXPECT_GT(modelled, 0) << "no window carried the model's view";
  EXPECT_EQ(followed, modelled);
}

TEST(Rollout, ParallelEnvironmentsGiveWhatOneThreadGives) {
  TrainConfig config = Tiny::Config();
  config.train.episodes_per_iteration = 3;
  config.train.profiles = {"amazon-books", "taobao"};
  config.train.nodes_max = 2;
  const std::vector<EnvSpec> envs = IterationEnvs(config.train, 0);
  const control::Policy actor = Tiny::Random(5);
  auto one = CollectRollouts(config.base, config.train, envs, actor, 1);
  auto two = CollectRollouts(config.base, config.train, envs, actor, 2);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(one->size(), 3u);
  for (size_t i = 0; i < envs.size(); ++i) {
    EXPECT_EQ((*one)[i].env.ToString(), envs[i].ToString());
    EXPECT_EQ((*one)[i].steps, (*two)[i].steps);
    EXPECT_EQ((*one)[i].reward_sum, (*two)[i].reward_sum);
  }
}

TEST(Rollout, IterationsDrawNewEnvironmentsUnlessAskedToReplay) {
  TrainConfig config = Tiny::Config();
  config.train.profiles = {"amazon-books", "taobao", "amazon-video-games"};
  config.train.load_min = 0.4;
  config.train.load_max = 0.95;
  config.train.episodes_per_iteration = 4;
  const std::vector<EnvSpec> a = IterationEnvs(config.train, 0);
  const std::vector<EnvSpec> b = IterationEnvs(config.train, 1);
  EXPECT_NE(a[0].ToString(), b[0].ToString());
  EXPECT_EQ(IterationEnvs(config.train, 1)[2].ToString(), b[2].ToString());
  for (const EnvSpec& e : a) {
    EXPECT_GE(e.load, 0.4);
    EXPECT_LE(e.load, 0.95);
  }
  config.train.same_envs_each_iteration = true;
  EXPECT_EQ(IterationEnvs(config.train, 0)[0].ToString(),
            IterationEnvs(config.train, 7)[0].ToString());
  // One host gather is no draw: the environments are those drawn without it. A choice is drawn
  // last in each environment.
  config.train.same_envs_each_iteration = false;
  config.train.host_gathers = {2.2e9};
  const std::vector<EnvSpec> one = IterationEnvs(config.train, 0);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(one[i].seed, a[i].seed);
    EXPECT_EQ(one[i].host_gather, 2.2e9);
  }
  config.train.host_gathers = {0, 2.2e9};
  config.train.episodes_per_iteration = 16;
  const std::vector<EnvSpec> gathered = IterationEnvs(config.train, 0);
  EXPECT_EQ(gathered[0].seed, a[0].seed);
  int slow = 0;
  for (const EnvSpec& e : gathered) {
    EXPECT_TRUE(e.host_gather == 0 || e.host_gather == 2.2e9);
    slow += e.host_gather > 0;
  }
  EXPECT_GT(slow, 0);
  EXPECT_LT(slow, 16);
}

TEST(Rollout, EnvConfigAppliesTheDraw) {
  const TrainConfig config = Tiny::Config();
  EnvSpec env = Tiny::Env();
  env.nodes = 3;
  env.gpu = "h100";
  env.load = 0.55;
  env.initial_split = 0.99;
  env.host_gather = 2.2e9;
  absl::StatusOr<config::Config> c = EnvConfig(config.base, config.train, env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->simulator.num_nodes, 3);
  EXPECT_EQ(c->simulator.gpu, "h100");
  EXPECT_EQ(c->simulator.host_gather_bytes_per_s, 2.2e9);
  EXPECT_EQ(c->simulator.load, 0.55);
  EXPECT_EQ(c->pool.initial_split, c->pool.r_max) << "clamped to the bounds";
  EXPECT_EQ(c->control.policy, "static");
  EXPECT_EQ(c->workload.profile, env.profile);
  EXPECT_EQ(c->workload.regime, env.regime);
  env.profile = "no-such-profile";
  EXPECT_FALSE(EnvConfig(config.base, config.train, env).ok());
}

// train.capacity_s: the load is a share of what the cluster served in capacity runs, measured once
// per cluster (not per episode seed) and kept.
TEST(Rollout, EnvConfigLoadsAShareOfTheMeasuredCapacity) {
  TrainConfig config = Tiny::Config();
  EnvSpec env = Tiny::Env();
  env.host_gather = 2.2e9;  // dear misses: the estimate, which counts every lookup a hit, is high
  absl::StatusOr<config::Config> estimated = EnvConfig(config.base, config.train, env);
  ASSERT_TRUE(estimated.ok()) << estimated.status();
  absl::StatusOr<double> estimated_rate = sim::OfferedRate(*estimated);
  ASSERT_TRUE(estimated_rate.ok());

  config.train.capacity_s = 0.5;
  sim::CapacityRuns memo;
  absl::StatusOr<config::Config> c = EnvConfig(config.base, config.train, env, &memo);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->simulator.load, 0) << "the rate is set, not the load";
  // The same capacity runs measured apart: the training seed, capacity_s, splits 0.1 / 0.5 / 0.9.
  config::Config probe = *estimated;
  probe.simulator.seed = config.train.seed;
  probe.simulator.sweep_capacity_s = config.train.capacity_s;
  sim::CapacityRuns fresh;
  absl::StatusOr<double> capacity = fresh.Measure(probe, {0.1, 0.5, 0.9});
  ASSERT_TRUE(capacity.ok()) << capacity.status();
  EXPECT_GT(*capacity, 0);
  EXPECT_DOUBLE_EQ(c->workload.rate_per_s, env.load * *capacity);
  EXPECT_LT(c->workload.rate_per_s, *estimated_rate) << "measured under the estimate";
  EXPECT_EQ(c->simulator.duration_s, config.train.episode_s) << "the episode's, not the runs'";

  EnvSpec other = env;
  other.seed = env.seed + 1;
  other.load = 0.3;
  absl::StatusOr<config::Config> d = EnvConfig(config.base, config.train, other, &memo);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_DOUBLE_EQ(d->workload.rate_per_s, 0.3 * *capacity) << "one capacity per cluster";
  EXPECT_EQ(d->workload.slo_ms, config.base.workload.slo_ms) << "no slo_batches: as configured";

  // slo_batches: the SLO is that many full batches of the node at the measured capacity.
  config.train.slo_batches = 8;
  absl::StatusOr<config::Config> e = EnvConfig(config.base, config.train, env, &memo);
  ASSERT_TRUE(e.ok()) << e.status();
  const double batch_ms = 1000.0 * config.base.node.max_batch / *capacity;
  EXPECT_DOUBLE_EQ(e->workload.slo_ms, 8 * batch_ms);
  EXPECT_DOUBLE_EQ(e->control.slo_ms, 8 * batch_ms) << "the features and reward use it too";
  config.train.capacity_s = 0;
  EXPECT_FALSE(config.train.Validate().ok()) << "slo_batches needs measured capacities";
}

// helm-train's --set: settings applied to the file's text, the train section's too.
TEST(TrainConfig, SettingsApplyToTheFileAsIfItSaidSo) {
  const std::string path = ::testing::TempDir() + "/train_settings.yaml";
  {
    std::ofstream f(path);
    f << "train:\n  iterations: 10\n  imitate_iterations: 10\n";
  }
  absl::StatusOr<TrainConfig> c =
      LoadTrainConfig(path, {"train.dagger_iterations=4", "control.hysteresis=0.2"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train.iterations, 10);
  EXPECT_EQ(c->train.dagger_iterations, 4);
  EXPECT_DOUBLE_EQ(c->base.control.hysteresis, 0.2);
  absl::StatusOr<TrainConfig> bad = LoadTrainConfig(path, {"train.dagger_iterations=11"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.dagger_iterations"), std::string::npos)
      << bad.status();
  EXPECT_FALSE(LoadTrainConfig(path, {"no_equals_sign"}).ok());
}

TEST(TrainConfig, ErrorsNameTheKey) {
  auto bad = ParseTrainConfig("train:\n  iteratons: 3\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.iteratons"), std::string::npos)
      << bad.status().message();
  bad = ParseTrainConfig("train:\n  load_max: 20\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.load_max"), std::string::npos);
  bad = ParseTrainConfig("train:\n  load_min: 0.9\n  load_max: 0.5\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.load_min"), std::string::npos);
  bad = ParseTrainConfig("train:\n  iterations: 3\n  imitate_iterations: 4\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.imitate_iterations"), std::string::npos);
  bad = ParseTrainConfig("train:\n  profiles: [nope]\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.profiles"), std::string::npos);
  bad = ParseTrainConfig("train:\n  gpus: [a100, tpu]\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.gpus: 'tpu' must be one of {a100, h100, cpu}"),
            std::string::npos)
      << bad.status().message();
  bad = ParseTrainConfig("pool:\n  chunk_bytes: 1000\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("pool.chunk_bytes"), std::string::npos);
  auto good = ParseTrainConfig(
      "train:\n  iterations: 3\n  scales: [1, 4]\n  same_envs_each_iteration: true\n"
      "  gpus: [a100, cpu]\nsimulator:\n  num_nodes: 2\n  gpu: cpu\n",
      "t.yaml");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->train.iterations, 3);
  EXPECT_EQ(good->train.scales, (std::vector<double>{1, 4}));
  EXPECT_TRUE(good->train.same_envs_each_iteration);
  EXPECT_EQ(good->base.simulator.num_nodes, 2);
  EXPECT_EQ(good->train.gpus, (std::vector<std::string>{"a100", "cpu"}));
  EXPECT_EQ(good->base.simulator.gpu, "cpu") << "sim/cost_model.h's CPU profile";
}

}  // namespace
}  // namespace helm::train
