// helm-train's torch half. Built only where LibTorch is found.
#include "helm/train/ppo.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "helm/control/policy.h"
#include "train/test_support.h"

namespace helm::train {
namespace {

std::vector<float> RandomInputs(int rows, int inputs, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows) * inputs);
  for (float& v : x) v = u(rng);
  return x;
}

// Mlp::Forward of a policy read back from its helm-policy-v1 JSON equals torch's forward of the
// original weights within 1e-5 (issue 13, Layer 1).
void ExpectMlpMatchesTorch(const control::Policy& policy, uint64_t seed) {
  absl::StatusOr<control::Policy> parsed =
      control::ParsePolicy(control::PolicyToJson(policy), "round trip");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  constexpr int kRows = 256;
  const int inputs = policy.mlp.inputs();
  const std::vector<float> x = RandomInputs(kRows, inputs, seed);
  const std::vector<float> want = TorchForward(policy, x);
  const int outputs = policy.mlp.outputs();
  ASSERT_EQ(want.size(), size_t(kRows) * outputs);
  std::vector<float> got(outputs);
  double worst = 0;
  for (int r = 0; r < kRows; ++r) {
    parsed->mlp.Forward(x.data() + size_t(r) * inputs, got.data());
    for (int o = 0; o < outputs; ++o) {
      worst = std::max(worst, double(std::abs(got[o] - want[size_t(r) * outputs + o])));
    }
  }
  EXPECT_LE(worst, 1e-5) << "seed " << seed;
  EXPECT_EQ(parsed->actions, policy.actions);
}

TEST(TorchCheck, HandWrittenMlpEqualsTorchForwardThroughTheJsonRoundTrip) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  ExpectMlpMatchesTorch(Tiny::Random(seed), seed);
  // Larger weights drive the tanh units into saturation and the logits far apart.
  control::Policy big = Tiny::Random(seed + 1);
  std::vector<control::Mlp::Layer> layers = big.mlp.layers();
  for (control::Mlp::Layer& l : layers) {
    for (float& w : l.weight) w *= 4;
  }
  big.mlp = control::Mlp(std::move(layers));
  ExpectMlpMatchesTorch(big, seed + 2);
}

TEST(TorchCheck, TheTrainersActorIsThePolicyANodeRuns) {
  const uint64_t seed = ::testing::UnitTest::GetInstance()->random_seed();
  // Reading the features before the model's (as v2) and all of them.
  for (int features : {control::kFirstModelFeature, control::kNumFeatures}) {
    TrainConfig config = Tiny::Config();
    config.train.seed = seed;
    config.train.features = features;
    auto trainer = PpoTrainer::Create(config);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    const control::Policy actor = (*trainer)->Actor();
    ASSERT_EQ(actor.mlp.layers().size(), 3u);
    EXPECT_EQ(actor.mlp.inputs(), features);
    EXPECT_EQ(actor.mlp.layers()[0].out, 64);
    EXPECT_EQ(actor.mlp.outputs(), 7);
    ExpectMlpMatchesTorch(actor, seed);
  }
}

// A few PPO iterations on a tiny cluster that starts at a bad split raise the mean reward per
// window. The same environment every iteration (common random numbers), so the difference is
// the policy's; the seed is fixed so the run is reproducible, and a learner that did not learn
// (or learned the wrong sign) fails.
// The tiny cluster replayed every iteration, with a large fixed step: the tests' trainer.
TrainConfig Replayed(uint64_t seed, int32_t iterations) {
  TrainConfig config = Tiny::Config();
  config.train.seed = seed;
  config.train.iterations = iterations;
  config.train.same_envs_each_iteration = true;
  config.train.learning_rate = 3e-3;
  config.train.anneal_lr = false;
  return config;
}

TEST(Ppo, ImitationIterationsTeachTheActorTheRulesActions) {
  TrainConfig config = Replayed(5, 5);
  config.train.imitate_iterations = 5;
  auto trainer = PpoTrainer::Create(config);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  std::vector<double> losses;
  for (int i = 0; i < config.train.iterations; ++i) {
    absl::StatusOr<IterationStats> s = (*trainer)->Iterate();
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_GT(s->decisions, 0);
    losses.push_back(s->rollout_cross_entropy);  // of the rule's actions, before the update
    std::printf("iteration %d: cross-entropy %.4f\n", s->iteration, s->rollout_cross_entropy);
  }
  // A fresh actor is near uniform over 7 actions (ln 7 = 1.95); it learns the rule's choices.
  EXPECT_GT(losses.front(), 1.5);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
}

// train.imitate_balance: 0 weighs every decision alike; 1 gives every action taken the same total
// weight; the weights always average 1 over the decisions.
TEST(Ppo, ImitationWeightsBalanceTheRareMoves) {
  std::vector<int64_t> actions(90, 3);  // 90 holds, 9 moves down, 1 up
  actions.insert(actions.end(), 9, 0);
  actions.push_back(6);
  const std::vector<float> none = ImitationWeights(actions, 7, 0);
  EXPECT_FLOAT_EQ(none[3], 1);
  EXPECT_FLOAT_EQ(none[0], 1);
  EXPECT_FLOAT_EQ(none[1], 0) << "an action not taken";
  const std::vector<float> full = ImitationWeights(actions, 7, 1);
  EXPECT_NEAR(90 * full[3], 9 * full[0], 1e-4);
  EXPECT_NEAR(90 * full[3], 1 * full[6], 1e-4);
  for (double balance : {0.0, 0.5, 1.0}) {
    const std::vector<float> w = ImitationWeights(actions, 7, balance);
    double sum = 0;
    for (int64_t a : actions) sum += w[a];
    EXPECT_NEAR(sum / actions.size(), 1, 1e-5) << balance;
  }
  const std::vector<float> half = ImitationWeights(actions, 7, 0.5);
  EXPECT_GT(half[6], half[0]);
  EXPECT_GT(half[0], half[3]);
}

// train.imitate_aggregate: the kickstart fits every imitated iteration's decisions so far.
TEST(Ppo, TheAggregatedKickstartKeepsEveryImitatedDecision) {
  for (bool aggregate : {false, true}) {
    TrainConfig config = Replayed(5, 3);
    config.train.imitate_iterations = 3;
    config.train.imitate_aggregate = aggregate;
    config.train.imitate_balance = 0.5;
    auto trainer = PpoTrainer::Create(config);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    int64_t decisions = 0, last = 0;
    for (int i = 0; i < config.train.iterations; ++i) {
      absl::StatusOr<IterationStats> s = (*trainer)->Iterate();
      ASSERT_TRUE(s.ok()) << s.status();
      decisions += s->decisions;
      last = s->decisions;
      EXPECT_GE(s->moved_share, 0);
      EXPECT_LE(s->moved_share, 1);
    }
    EXPECT_EQ((*trainer)->imitated_decisions(), aggregate ? decisions : last);
  }
}

// Mean KL(p || q) of two policies' action distributions over `states`.
double MeanKl(const control::Policy& p, const control::Policy& q,
              const std::vector<control::Features>& states) {
  std::vector<float> lp(p.actions.size()), lq(q.actions.size());
  double sum = 0;
  for (const control::Features& f : states) {
    p.mlp.Forward(f.data(), lp.data());
    q.mlp.Forward(f.data(), lq.data());
    const std::vector<float> a = LogSoftmax(lp), b = LogSoftmax(lq);
    for (size_t i = 0; i < a.size(); ++i) sum += std::exp(a[i]) * (a[i] - b[i]);
  }
  return sum / static_cast<double>(states.size());
}

TEST(Ppo, TheKickstartKlKeepsPpoNearTheKickstart) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<control::Features> states(200);
  for (control::Features& f : states) {
    for (float& x : f) x = u(rng);
  }
  double drift[2];
  for (int with_kl = 0; with_kl < 2; ++with_kl) {
    TrainConfig config = Replayed(5, 6);
    config.train.imitate_iterations = 2;
    config.train.kickstart_kl = with_kl ? 10.0 : 0.0;
    auto trainer = PpoTrainer::Create(config);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*trainer)->Iterate().ok());
    const control::Policy kickstart = (*trainer)->Actor();
    for (int i = 2; i < config.train.iterations; ++i) ASSERT_TRUE((*trainer)->Iterate().ok());
    drift[with_kl] = MeanKl(kickstart, (*trainer)->Actor(), states);
    std::printf("kickstart_kl %g: KL from the kickstart %.5f\n", config.train.kickstart_kl,
                drift[with_kl]);
  }
  EXPECT_GT(drift[0], 0) << "PPO moved the actor";
  EXPECT_LT(drift[1], 0.5 * drift[0]);
}

TEST(Ppo, AFewIterationsOnATinyClusterRaiseTheReward) {
  TrainConfig config = Replayed(11, 6);
  config.train.episodes_per_iteration = 3;
  config.train.episode_s = 6;
  config.train.profiles = {"taobao"};
  config.train.initial_split_min = config.train.initial_split_max = 0.9;
  auto trainer = PpoTrainer::Create(config);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  std::vector<double> rewards;
  for (int i = 0; i < config.train.iterations; ++i) {
    absl::StatusOr<IterationStats> s = (*trainer)->Iterate();
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_GT(s->steps, 0);
    EXPECT_TRUE(std::isfinite(s->policy_loss) && std::isfinite(s->value_loss));
    rewards.push_back(s->mean_reward);
    std::printf("iteration %d: reward %.4f entropy %.3f\n", s->iteration, s->mean_reward,
                s->entropy);
  }
  const double first = rewards.front();
  const double last = (rewards[rewards.size() - 1] + rewards[rewards.size() - 2]) / 2;
  EXPECT_GT(last, first + 0.05 * std::abs(first)) << "first " << first << ", last two " << last;
}

}  // namespace
}  // namespace helm::train
