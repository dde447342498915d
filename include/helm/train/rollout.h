// helm-train's rollout side (issue 13 "Training"), free of LibTorch: environments are helm-sim
// runs of randomised configs, and in each every node's split is moved by a TrainingController
// that samples the actor's actions. The PPO update (ppo.h) consumes the trajectories.
//
// The step. Each statistics window a node's controller extracts the features (features.h) of the
// window just closed, computes softmax(actor logits) with the hand-written control::Mlp holding
// the actor's current weights, samples an action (a split change), and passes it through the
// SafetyGate (safety.h), like the frozen policy in a node. The step's reward is control::Reward of
// the NEXT window (the one the decision governed). A window closed with a move still in flight
// is a step too (its reward and value chain on), but no decision: the gate holds the target
// whatever the policy says, so it is recorded with decided = false and the update leaves it out
// of the policy loss. The last window of an episode has no next window: it ends the trajectory
// as its bootstrap state (a time limit, not a terminal state).
//
// Determinism: an episode's result depends only on its config, the actor and its seed; a batch of
// episodes on N threads gives the same trajectories as on one (results are kept by index).
//
// Thread-safety: TrainingController is thread-compatible (one simulator thread calls Decide).
// RunEpisode and CollectRollouts may run concurrently; the actor they read is not modified.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/config/config.h"
#include "helm/control/features.h"
#include "helm/control/options.h"
#include "helm/control/policy.h"
#include "helm/control/reward.h"
#include "helm/control/safety.h"
#include "helm/control/split_controller.h"
#include "helm/sim/sweep.h"
#include "helm/train/options.h"

namespace helm::train {

struct Step {
  control::Features features{};  // of the window just closed: the state
  int32_t action = 0;            // index into the policy's actions (the sampled one)
  float log_prob = 0;            // log softmax(logits)[action] under the acting weights
  bool decided = false;          // false: a move was in flight, the gate held the target
  float reward = 0;              // control::Reward of the next window
  double target = 0;             // the target split after the gate
};

// One node's steps in one episode.
struct Trajectory {
  std::vector<Step> steps;
  // The state after the last step (its reward is unknown): the value bootstrap at the time limit.
  control::Features bootstrap{};
  bool has_bootstrap = false;
};

class TrainingController final : public control::SplitController {
 public:
  // `actor`'s MLP is copied (Forward keeps scratch buffers). The gate uses control.max_move and
  // control.hold_windows and [r_min, r_max].
  // With a `teacher`, each decided step records the action nearest the teacher's change, with the
  // actor's log-probability of it (behaviour cloning, TrainOptions::imitate_iterations), and the
  // teacher decides; or, with `actor_acts` (DAgger, TrainOptions::dagger_iterations), the actor's
  // argmax action does, through the gate.
  TrainingController(const control::Policy& actor, const control::FeatureScales& scales,
                     const control::ControlOptions& options, double r_min, double r_max,
                     uint64_t seed, const control::RewardWeights& weights = {},
                     std::unique_ptr<control::SplitController> teacher = nullptr,
                     bool actor_acts = false);

  double Decide(const serve::StatsWindow& window) override;
  std::string name() const override { return "train"; }
  int64_t reversals() const override { return gate_.reversals(); }

  // The steps so far, each with its reward; the last decision (whose reward is not known yet)
  // becomes the bootstrap state. Call once, after the episode.
  Trajectory Finish();

 private:
  control::Policy actor_;
  control::FeatureScales scales_;
  control::RewardWeights weights_;
  control::FeatureExtractor extractor_;
  control::SafetyGate gate_;
  std::mt19937_64 rng_;
  std::unique_ptr<control::SplitController> teacher_;
  bool actor_acts_ = false;
  std::vector<float> logits_;
  int32_t hold_action_ = 0;  // the action nearest 0, recorded for windows with no decision
  Trajectory trajectory_;
  bool pending_ = false;  // the last step waits for its reward
  double previous_target_ = 0;
};

// The index of the action (a split change) nearest `delta`; the first of equals.
int32_t NearestAction(const std::vector<double>& actions, double delta);

// log softmax(logits)[i] for every i (max-subtracted, as torch computes it).
std::vector<float> LogSoftmax(const std::vector<float>& logits);

// One environment: a draw of the domain randomisation.
struct EnvSpec {
  std::string profile = "taobao";
  std::string regime = "steady";
  double scale = 2;
  double load = 0.7;
  int32_t nodes = 1;
  std::string gpu = "a100";
  double initial_split = 0.5;
  uint64_t seed = 1;       // the simulator's (workload) seed and the controllers' sampling seed
  double host_gather = 0;  // simulator.host_gather_bytes_per_s (0: the profile's)

  std::string ToString() const;
};

// Draws an environment from `options`' ranges with `rng`.
EnvSpec SampleEnv(const TrainOptions& options, std::mt19937_64& rng);

// The environments of iteration `iteration` (0-based) of a run: episodes_per_iteration draws
// seeded by (options.seed, iteration), or by (options.seed, 0) with same_envs_each_iteration.
std::vector<EnvSpec> IterationEnvs(const TrainOptions& options, int iteration);

// `base` made into `env`'s simulator config: sim::ConfigForCell(base, profile, regime, scale),
// then simulator.num_nodes, gpu (the calibration file dropped), host gather, load, seed, episode_s
// of simulated time, pool.initial_split (clamped to [r_min, r_max]), control.policy "static" (the
// hook installs the trainer's controllers) and control.slo_ms = workload.slo_ms. With
// options.capacity_s > 0 the load becomes workload.rate_per_s against the cluster's measured
// capacity (sim::CapacityRuns at splits 0.1, 0.5 and 0.9, run with the training seed so that the
// figure does not depend on which episode measured it; `capacities` keeps them across episodes,
// or they are measured afresh when it is null), and with options.slo_batches > 0 both SLOs are
// set from that capacity. InvalidArgument naming the key when the cell cannot be built.
absl::StatusOr<config::Config> EnvConfig(const config::Config& base, const TrainOptions& options,
                                         const EnvSpec& env,
                                         sim::CapacityRuns* capacities = nullptr);

struct EpisodeResult {
  EnvSpec env;
  std::vector<Trajectory> trajectories;  // one per node
  int64_t steps = 0;                     // rewarded steps over all nodes
  int64_t decisions = 0;                 // of them, decided ones
  double reward_sum = 0;                 // over the rewarded steps
  double rate_per_s = 0;  // the offered base rate (sim::OfferedRate of the episode's config)
  double slo_ms = 0;      // the episode's SLO (TrainOptions::slo_batches)
  double p99_ms = 0;
  double slo_attainment = 0;
  double simulated_s = 0;
  double wall_s = 0;
};

// episodes.csv (helm-train): one row per episode, its draw and what it scored.
std::string EpisodeCsvHeader();
std::string EpisodeCsvRow(int32_t iteration, const EpisodeResult& episode);

// How an episode's decisions are made: the actor samples them (PPO), the train.teacher rule makes
// them and labels them (the kickstart), or the actor makes them greedily and the rule labels them
// (DAgger).
enum class Acting { kActor, kTeacher, kActorLabelledByTeacher };

// Runs one episode of `env` (EnvConfig), its nodes' decisions made as `acting` says.
absl::StatusOr<EpisodeResult> RunEpisode(const config::Config& base, const TrainOptions& options,
                                         const EnvSpec& env, const control::Policy& actor,
                                         sim::CapacityRuns* capacities = nullptr,
                                         Acting acting = Acting::kActor);

// Runs every env on up to `threads` std::threads at once; results in the order of `envs`. The
// first error (in env order) is returned.
absl::StatusOr<std::vector<EpisodeResult>> CollectRollouts(
    const config::Config& base, const TrainOptions& options, const std::vector<EnvSpec>& envs,
    const control::Policy& actor, int threads, sim::CapacityRuns* capacities = nullptr,
    Acting acting = Acting::kActor);

}  // namespace helm::train
