// Options of helm-train (issue 13 "Training"): the offline PPO trainer of the split controller's
// base policy, and the domain randomisation of its simulated environments.
//
// A training config (configs/train/base.yaml) is a whole HELM config (config/config.h: the
// model, node, pool, workload, simulator sections every environment starts from) plus one more
// section, `train:`, described by TrainOptions below. Every episode is one helm-sim run of an
// environment drawn from the ranges below (rollout.h: SampleEnv, EnvConfig).
//
// Errors name the key path ("train.load_max: must be in [0.05, 10], got 20"); an unknown key under
// train is an error. Thread-compatible value types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "helm/config/config.h"
#include "helm/config/describe.h"
#include "helm/control/features.h"

namespace helm::train {

struct TrainOptions {
  // ---- The loop --------------------------------------------------------------------------
  int32_t iterations = 60;             // PPO iterations (rollouts, then an update)
  int32_t episodes_per_iteration = 8;  // simulator runs per iteration
  int32_t envs = 2;                    // episodes run at once, one std::thread each
  uint64_t seed = 1;                   // everything random derives from it
  double episode_s = 20;               // simulated seconds per episode
  // true: every iteration replays the same environments and workload seeds (common random
  // numbers: the reward curve then shows the policy, not the draw). For tests and ablations.
  bool same_envs_each_iteration = false;
  // The first imitate_iterations iterations kickstart the actor by behaviour cloning: their
  // rollouts are acted by the `teacher` rule (split_controller.h, with the config's control
  // knobs), and the update fits the actor's log-probability of the rule's action (cross-entropy)
  // and the critic to the returns, where PPO's clipped surrogate would be. PPO goes on from there.
  int32_t imitate_iterations = 0;
  // The rule the kickstart imitates: "marginal" (the ghost gains) or "predictive" (the model's
  // best split; the nodes then keep the miniature caches it reads).
  std::string teacher = "marginal";
  // The features the actor and critic read: the first N of features.h. 19 is every feature but
  // the predictive model's (19-20); 21 reads those too, and the nodes keep the miniature caches.
  int32_t features = 19;
  // The last dagger_iterations of the imitate_iterations let the actor act (greedily, as a node's
  // frozen policy does) while the teacher's choice is still the label (DAgger, Ross et al. 2011):
  // the kickstart then sees the states its own mistakes lead to, which the teacher's rollouts
  // never visit.
  int32_t dagger_iterations = 0;
  // The kickstart fits the actor to every imitated iteration's decisions so far (the dataset
  // aggregated over iterations), not only the latest iteration's: a rule that seldom moves gives
  // few moves an iteration.
  bool imitate_aggregate = false;
  // Each imitated decision weighs (its action's share of the decisions)^-imitate_balance,
  // normalised to a mean of 1: 0 weighs all alike; 1 weighs every action alike, so that the rare
  // moves count as much as the common hold.
  double imitate_balance = 0;
  // > 0: after the kickstart, PPO's loss adds this times KL(kickstart actor || actor) on the
  // decided states, so that it improves on the rule's imitation without drifting off it.
  double kickstart_kl = 0;

  // ---- Domain randomisation (one draw per episode) ------------------------------------------
  std::vector<std::string> profiles = {"taobao", "amazon-books", "amazon-video-games", "kuairand",
                                       "movielens-20m"};
  std::vector<std::string> regimes = {"steady", "trend", "burst"};
  // Embedding footprint / pool (sim/sweep.h ConfigForCell), one drawn per episode.
  std::vector<double> scales = {0.5, 2, 8};
  double load_min = 0.40;  // simulator.load, uniform in [load_min, load_max]
  double load_max = 0.95;
  // > 0: the load is a share of the cluster's measured capacity, not of sweep.h's estimate (which
  // counts every EMB lookup a hit and no K/V reuse, so that where misses are dear most draws
  // overload and the reward saturates): the most that steady runs of capacity_s simulated seconds
  // at static splits 0.1, 0.5 and 0.9 serve, measured once per cluster (rollout.h EnvConfig).
  double capacity_s = 0;
  // > 0 (with capacity_s): each episode's SLO is this many full batches of its node at the measured
  // capacity (slo_batches x node.max_batch x nodes / capacity), so that P99 / SLO means the same
  // on a profile whose requests are 100x dearer; 0: workload.slo_ms for every episode.
  double slo_batches = 0;
  int32_t nodes_min = 1;  // simulator.num_nodes, uniform in [nodes_min, nodes_max]
  int32_t nodes_max = 4;
  std::vector<std::string> gpus = {"a100", "h100"};  // simulator.gpu
  // simulator.host_gather_bytes_per_s (0: the profile's, i.e. not modelled): how fast the node's
  // host thread gathers EMB misses, which decides what a miss costs against a K/V recompute.
  std::vector<double> host_gathers = {0};
  // pool.initial_split, uniform in [split_min, split_max] (then clamped to [r_min, r_max]).
  double initial_split_min = 0.1;
  double initial_split_max = 0.9;

  // ---- PPO (CleanRL's settings for small discrete control) ---------------------------------
  std::vector<double> actions = {-0.10, -0.05, -0.02, 0, 0.02, 0.05, 0.10};  // split changes
  int32_t hidden = 64;            // two tanh layers of this width, actor and critic
  double learning_rate = 2.5e-4;  // Adam, eps 1e-5
  bool anneal_lr = true;          // linearly to 0 over `iterations`
  double gamma = 0.99;            // per statistics window
  double gae_lambda = 0.95;
  double clip = 0.2;  // policy ratio clip
  double entropy_coef = 0.01;
  double value_coef = 0.5;
  int32_t update_epochs = 4;
  int32_t minibatches = 4;
  double max_grad_norm = 0.5;
  bool normalize_advantages = true;

  template <class V>
  void Describe(V& v) {
    v.Field("iterations", iterations, "PPO iterations", config::InRange<int32_t>(1, 1000000));
    v.Field("episodes_per_iteration", episodes_per_iteration, "simulator runs per iteration",
            config::InRange<int32_t>(1, 100000));
    v.Field("envs", envs, "episodes run at once (threads)", config::InRange<int32_t>(1, 256));
    v.Field("seed", seed, "random seed of the whole run");
    v.Field("episode_s", episode_s, "simulated seconds per episode", config::InRange(0.1, 1e5));
    v.Field("same_envs_each_iteration", same_envs_each_iteration,
            "replay the same environments every iteration");
    v.Field("imitate_iterations", imitate_iterations,
            "first iterations that clone the marginal rule's decisions before PPO",
            config::InRange<int32_t>(0, 1000000));
    v.Field("teacher", teacher, "the rule the kickstart imitates",
            config::OneOf({"marginal", "predictive"}));
    v.Field("features", features, "features the policy reads (the first N of features.h)",
            config::InRange<int32_t>(1, control::kNumFeatures));
    v.Field("dagger_iterations", dagger_iterations,
            "last imitated iterations acted by the actor, labelled by the teacher",
            config::InRange<int32_t>(0, 1000000));
    v.Field("imitate_aggregate", imitate_aggregate,
            "fit the kickstart to every imitated iteration's decisions so far");
    v.Field("imitate_balance", imitate_balance,
            "weigh each imitated decision by its action's share to the minus this power",
            config::InRange(0.0, 1.0));
    v.Field("kickstart_kl", kickstart_kl,
            "weight of KL(kickstart actor || actor) in PPO's loss after the kickstart",
            config::InRange(0.0, 1000.0));
    v.Field("profiles", profiles, "workload profiles drawn from");
    v.Field("regimes", regimes, "regimes drawn from (steady, trend, burst)");
    v.Field("scales", scales, "embedding footprint / pool, drawn from");
    v.Field("load_min", load_min, "lowest simulator.load", config::InRange(0.01, 10.0));
    v.Field("load_max", load_max, "highest simulator.load", config::InRange(0.01, 10.0));
    v.Field("capacity_s", capacity_s,
            "simulated seconds of each capacity run (0: loads are shares of the estimate)",
            config::InRange(0.0, 1e4));
    v.Field("slo_batches", slo_batches,
            "each episode's SLO in full batches at its measured capacity (0: workload.slo_ms)",
            config::InRange(0.0, 1e6));
    v.Field("nodes_min", nodes_min, "fewest nodes", config::InRange<int32_t>(1, 4096));
    v.Field("nodes_max", nodes_max, "most nodes", config::InRange<int32_t>(1, 4096));
    v.Field("gpus", gpus, "cost profiles drawn from (a100, h100, cpu)");
    v.Field("host_gathers", host_gathers,
            "host gather bytes/s of EMB misses drawn from (0: the profile's)");
    v.Field("initial_split_min", initial_split_min, "lowest pool.initial_split",
            config::InRange(0.0, 1.0));
    v.Field("initial_split_max", initial_split_max, "highest pool.initial_split",
            config::InRange(0.0, 1.0));
    v.Field("actions", actions, "split changes, one per policy output");
    v.Field("hidden", hidden, "hidden width of actor and critic",
            config::InRange<int32_t>(1, 4096));
    v.Field("learning_rate", learning_rate, "Adam step size", config::InRange(1e-8, 1.0));
    v.Field("anneal_lr", anneal_lr, "anneal the step size linearly to 0");
    v.Field("gamma", gamma, "discount per window", config::InRange(0.0, 1.0));
    v.Field("gae_lambda", gae_lambda, "GAE lambda", config::InRange(0.0, 1.0));
    v.Field("clip", clip, "PPO ratio clip", config::InRange(0.0, 10.0));
    v.Field("entropy_coef", entropy_coef, "entropy bonus", config::InRange(0.0, 10.0));
    v.Field("value_coef", value_coef, "value loss weight", config::InRange(0.0, 100.0));
    v.Field("update_epochs", update_epochs, "passes over each batch",
            config::InRange<int32_t>(1, 1000));
    v.Field("minibatches", minibatches, "minibatches per pass", config::InRange<int32_t>(1, 4096));
    v.Field("max_grad_norm", max_grad_norm, "gradient norm clip", config::InRange(0.0, 1e6));
    v.Field("normalize_advantages", normalize_advantages, "normalise advantages per minibatch");
  }

  // Checks that span fields (min <= max, non-empty lists, known names, |action| <= 0.5). Its
  // messages name the key inside the section ("load_min: ..."); the reader prefixes "train.".
  absl::Status Validate() const;
};

struct TrainConfig {
  config::Config base;  // every section but train, validated as helm-sim would
  TrainOptions train;
};

// Parses a training config (above): InvalidArgument naming the key path of every error, in the
// train section or in the HELM sections.
absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text,
                                             const std::string& source);
// Reads and parses a file, `settings` ("section.key=value", helm-train's --set, train.* too)
// applied to its text first (config::ApplySettings); NotFound when it cannot be read.
absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& settings = {});

}  // namespace helm::train
