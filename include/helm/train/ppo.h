// helm-train's learner (issue 13 "Training"): PPO with clipping and GAE (CleanRL's ppo.py for
// discrete actions) on LibTorch, over the rollouts of rollout.h. Built only where LibTorch is
// found (CMake HELM_WITH_TORCH); this header names no torch type, so only ppo.cc compiles
// against LibTorch.
//
// Networks: actor 19 -> hidden -> hidden -> actions and critic 19 -> hidden -> hidden -> 1, tanh,
// torch.nn.Linear layers initialised orthogonally (gain sqrt 2; the actor's last layer 0.01, the
// critic's 1) with zero biases, as CleanRL does. The actor is exactly control::Mlp's layout, so
// Actor() is the policy a node runs (control::PolicyToJson writes it as helm-policy-v1).
//
// One Iterate(): the actor's weights are copied into a control::Policy; the iteration's
// environments (IterationEnvs) run on `envs` threads with it; the critic values every step;
// GAE(gamma, lambda) per trajectory, bootstrapped from the state after its last step (episodes end
// by a time limit); then update_epochs passes over shuffled minibatches: the clipped surrogate on
// the decided steps (windows with a move in flight carry no decision), the clipped value loss on
// all steps, the entropy bonus, Adam with the gradient norm clipped; the step size annealed
// linearly over the run.
//
// Kickstart: the first train.imitate_iterations iterations roll out with the train.teacher rule
// acting (split_controller.h) and replace the clipped surrogate by the cross-entropy of the rule's
// actions (no entropy bonus), weighted by train.imitate_balance, over the iteration's decisions or
// (train.imitate_aggregate) every imitated iteration's so far, split into as many minibatches as
// the iteration's steps; the critic learns the rule's returns. PPO goes on from that actor, with
// train.kickstart_kl x KL(the kickstart's actor || the actor) added to its loss.
//
// Value loss: 0.5 (V - return)^2, unclipped (returns run to hundreds of reward units, where
// CleanRL's value clip of 0.2 would stall the critic); the actor's and the critic's gradient norms
// are clipped each on its own for the same reason.
//
// Deterministic for a seed on one machine: rollouts are (rollout.h), and torch runs with one
// intra-op thread and a seeded generator. Create sets LibTorch's process-wide state (its global
// seed, one intra-op thread): one trainer per process.
//
// Thread-compatible: one thread calls Iterate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/control/policy.h"
#include "helm/train/options.h"
#include "helm/train/rollout.h"

namespace helm::train {

struct IterationStats {
  int32_t iteration = 0;         // 1-based
  int64_t steps = 0;             // rewarded steps in the iteration's rollouts (all nodes)
  int64_t total_steps = 0;       // over the run so far
  int64_t decisions = 0;         // of steps, those where the policy decided
  double mean_reward = 0;        // per step, over the iteration's rollouts
  double mean_p99_over_slo = 0;  // episodes' P99 / SLO, averaged
  // -mean log-prob, under the actor that rolled out, of the decided steps' actions: its sampled
  // actions' surprisal, or (imitating) its cross-entropy against the rule's choices.
  double rollout_cross_entropy = 0;
  // Of the decided steps, the share whose action was a move (not the action nearest 0).
  double moved_share = 0;
  double policy_loss = 0;  // the last epoch's means
  double value_loss = 0;
  double entropy = 0;
  double approx_kl = 0;
  double clip_fraction = 0;
  double learning_rate = 0;
  double rollout_wall_s = 0;
  double update_wall_s = 0;
  double wall_s = 0;                    // since the trainer was created
  std::vector<EpisodeResult> episodes;  // the iteration's rollouts, without their trajectories
};

class PpoTrainer {
 public:
  // InvalidArgument naming the train key for options the networks cannot take.
  static absl::StatusOr<std::unique_ptr<PpoTrainer>> Create(const TrainConfig& config);
  ~PpoTrainer();

  // Runs one iteration (above). Errors of the simulator (a config it cannot run) pass through.
  absl::StatusOr<IterationStats> Iterate();

  // The actor's current weights as the node's policy (actions: train.actions).
  control::Policy Actor() const;
  int32_t iterations_done() const;
  // The teacher's decisions the kickstart fits now (train.imitate_aggregate: all so far).
  int64_t imitated_decisions() const;

 private:
  struct Impl;
  explicit PpoTrainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Each action's weight in the kickstart's loss: (its share of `actions`)^-balance, normalised so
// that the weights of `actions` average 1 (train.imitate_balance); 0 for actions not taken.
std::vector<float> ImitationWeights(const std::vector<int64_t>& actions, int num_actions,
                                    double balance);

// Torch's forward of `policy`'s MLP (torch::nn::Linear layers, tanh between) on `inputs`
// ([n][policy.mlp.inputs()], row-major): [n][outputs], for checking control::Mlp against it.
std::vector<float> TorchForward(const control::Policy& policy, const std::vector<float>& inputs);

// The curve CSV (one row per iteration) of IterationStats.
std::string CurveCsvHeader();
std::string CurveCsvRow(const IterationStats& stats);

}  // namespace helm::train
