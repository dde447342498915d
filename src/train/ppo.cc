// The only translation unit of HELM that includes LibTorch (each costs ~1 GB and ~20 s to
// compile): the networks, PPO's update and the check forward.
#include "helm/train/ppo.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "helm/common/status.h"
#include "helm/control/features.h"
#include "helm/train/rollout.h"

namespace helm::train {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// in -> hidden -> hidden -> out, tanh between; CleanRL's layer_init: orthogonal weights (gain
// sqrt 2, `last_gain` for the output layer) and zero biases.
torch::nn::Sequential MakeNet(int in, int hidden, int out, double last_gain) {
  torch::nn::Sequential net(torch::nn::Linear(in, hidden), torch::nn::Tanh(),
                            torch::nn::Linear(hidden, hidden), torch::nn::Tanh(),
                            torch::nn::Linear(hidden, out));
  torch::NoGradGuard no_grad;
  const size_t last = net->size() - 1;
  for (size_t i = 0; i < net->size(); ++i) {
    auto linear = net[i]->as<torch::nn::Linear>();
    if (linear == nullptr) continue;
    torch::nn::init::orthogonal_(linear->weight, i == last ? last_gain : std::sqrt(2.0));
    torch::nn::init::constant_(linear->bias, 0.0);
  }
  return net;
}

// The Linear layers of `net`, in order.
std::vector<torch::nn::LinearImpl*> Linears(torch::nn::Sequential net) {
  std::vector<torch::nn::LinearImpl*> out;
  for (size_t i = 0; i < net->size(); ++i) {
    if (auto* l = net[i]->as<torch::nn::Linear>()) out.push_back(l);
  }
  return out;
}

// The first `inputs` features of every row (the ones the actor reads).
torch::Tensor FeaturesTensor(const std::vector<control::Features>& rows, int inputs) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(rows.size()), inputs});
  float* p = t.data_ptr<float>();
  for (const control::Features& f : rows) p = std::copy(f.begin(), f.begin() + inputs, p);
  return t;
}

// Mean of `x` over the entries where `mask` is 1 (0 when there are none).
torch::Tensor MaskedMean(const torch::Tensor& x, const torch::Tensor& mask) {
  return (x * mask).sum() / mask.sum().clamp_min(1.0);
}

}  // namespace

struct PpoTrainer::Impl {
  TrainConfig config;
  torch::nn::Sequential actor{nullptr}, critic{nullptr};
  // The actor as the kickstart left it (train.kickstart_kl), frozen; null before or without one.
  torch::nn::Sequential anchor{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer;
  int32_t iteration = 0;
  int64_t total_steps = 0;
  Clock::time_point start = Clock::now();
  sim::CapacityRuns capacities;  // train.capacity_s: measured once per cluster, kept for the run
  // The imitated decisions (train.imitate_aggregate: of every imitated iteration so far).
  std::vector<control::Features> imitated_obs;
  std::vector<int64_t> imitated_actions;
};

absl::StatusOr<std::unique_ptr<PpoTrainer>> PpoTrainer::Create(const TrainConfig& config) {
  const TrainOptions& o = config.train;
  if (o.actions.size() < 2) return absl::InvalidArgumentError("train.actions: needs two or more");
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  try {
    // Rollouts own the cores; the update is small.
    torch::set_num_threads(1);
    torch::manual_seed(o.seed);
    const int actions = static_cast<int>(o.actions.size());
    impl->actor = MakeNet(o.features, o.hidden, actions, 0.01);
    impl->critic = MakeNet(o.features, o.hidden, 1, 1.0);
    std::vector<torch::Tensor> params = impl->actor->parameters();
    for (const torch::Tensor& p : impl->critic->parameters()) params.push_back(p);
    impl->optimizer = std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.learning_rate).eps(1e-5));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("libtorch: ", e.what()));
  }
  return std::unique_ptr<PpoTrainer>(new PpoTrainer(std::move(impl)));
}

PpoTrainer::PpoTrainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PpoTrainer::~PpoTrainer() = default;

int32_t PpoTrainer::iterations_done() const { return impl_->iteration; }

control::Policy PpoTrainer::Actor() const {
  std::vector<control::Mlp::Layer> layers;
  for (torch::nn::LinearImpl* l : Linears(impl_->actor)) {
    control::Mlp::Layer layer;
    const torch::Tensor w = l->weight.detach().contiguous();
    const torch::Tensor b = l->bias.detach().contiguous();
    layer.out = static_cast<int>(w.size(0));
    layer.in = static_cast<int>(w.size(1));
    layer.weight.assign(w.data_ptr<float>(), w.data_ptr<float>() + w.numel());
    layer.bias.assign(b.data_ptr<float>(), b.data_ptr<float>() + b.numel());
    layers.push_back(std::move(layer));
  }
  return control::Policy{control::Mlp(std::move(layers)), impl_->config.train.actions};
}

absl::StatusOr<IterationStats> PpoTrainer::Iterate() {
  Impl& m = *impl_;
  const TrainOptions& o = m.config.train;
  IterationStats stats;
  stats.iteration = m.iteration + 1;

  // ---- Rollouts (no torch: the actor's weights run in control::Mlp on plain threads) ----------
  const Clock::time_point rollout_start = Clock::now();
  // Behaviour cloning first (TrainOptions::imitate_iterations): the teacher rule acts, and in the
  // last dagger_iterations of them the actor does, the rule labelling.
  const bool imitate = m.iteration < o.imitate_iterations;
  const Acting acting = !imitate ? Acting::kActor
                        : m.iteration >= o.imitate_iterations - o.dagger_iterations
                            ? Acting::kActorLabelledByTeacher
                            : Acting::kTeacher;
  HELM_ASSIGN_OR_RETURN(std::vector<EpisodeResult> episodes,
                        CollectRollouts(m.config.base, o, IterationEnvs(o, m.iteration), Actor(),
                                        o.envs, &m.capacities, acting));
  stats.rollout_wall_s = Seconds(rollout_start);

  std::vector<control::Features> obs, bootstrap_obs;
  std::vector<int64_t> actions;
  std::vector<float> old_log_probs, rewards, decided;
  struct Range {
    size_t begin, end;
    int bootstrap;  // index into bootstrap_obs, -1: none
  };
  std::vector<Range> ranges;
  double reward_sum = 0, p99_over_slo = 0, surprisal = 0;
  int64_t moves = 0;
  const int64_t hold = NearestAction(o.actions, 0);  // the action that holds the split
  if (imitate && !o.imitate_aggregate) {
    m.imitated_obs.clear();
    m.imitated_actions.clear();
  }
  for (const EpisodeResult& e : episodes) {
    reward_sum += e.reward_sum;
    stats.decisions += e.decisions;
    p99_over_slo += e.p99_ms / std::max(1e-9, e.slo_ms);
    for (const Trajectory& t : e.trajectories) {
      if (t.steps.empty()) continue;
      Range r{obs.size(), obs.size() + t.steps.size(), -1};
      for (const Step& s : t.steps) {
        obs.push_back(s.features);
        actions.push_back(s.action);
        old_log_probs.push_back(s.log_prob);
        rewards.push_back(s.reward);
        decided.push_back(s.decided ? 1.0f : 0.0f);
        if (s.decided) {
          surprisal -= s.log_prob;
          moves += s.action != hold ? 1 : 0;
          if (imitate) {
            m.imitated_obs.push_back(s.features);
            m.imitated_actions.push_back(s.action);
          }
        }
      }
      if (t.has_bootstrap) {
        r.bootstrap = static_cast<int>(bootstrap_obs.size());
        bootstrap_obs.push_back(t.bootstrap);
      }
      ranges.push_back(r);
    }
  }
  const int64_t n = static_cast<int64_t>(obs.size());
  stats.steps = n;
  m.total_steps += n;
  stats.total_steps = m.total_steps;
  stats.mean_reward = n > 0 ? reward_sum / n : 0;
  stats.mean_p99_over_slo = episodes.empty() ? 0 : p99_over_slo / episodes.size();
  stats.rollout_cross_entropy = stats.decisions > 0 ? surprisal / stats.decisions : 0;
  stats.moved_share = stats.decisions > 0 ? static_cast<double>(moves) / stats.decisions : 0;
  if (n == 0) {
    return absl::FailedPreconditionError(
        "the iteration's episodes made no step: train.episode_s is shorter than two statistics "
        "windows (control.interval_ms)");
  }

  // ---- Update -----------------------------------------------------------------------------
  const Clock::time_point update_start = Clock::now();
  try {
    if (!imitate && o.imitate_iterations > 0 && o.kickstart_kl > 0 && !m.anchor) {
      // The first PPO iteration after the kickstart: freeze the actor it left as the anchor.
      m.anchor = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(m.actor->clone());
      for (torch::Tensor& p : m.anchor->parameters()) p.set_requires_grad(false);
    }
    const double frac = 1.0 - static_cast<double>(m.iteration) / o.iterations;
    stats.learning_rate = o.anneal_lr ? std::max(0.0, frac) * o.learning_rate : o.learning_rate;
    for (auto& group : m.optimizer->param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(stats.learning_rate);
    }
    const torch::Tensor obs_t = FeaturesTensor(obs, o.features);
    const torch::Tensor actions_t = torch::from_blob(actions.data(), {n}, torch::kLong).clone();
    const torch::Tensor old_logp_t = torch::from_blob(old_log_probs.data(), {n}).clone();
    const torch::Tensor decided_t = torch::from_blob(decided.data(), {n}).clone();

    // GAE per trajectory with the critic as it was for the rollouts.
    std::vector<float> values(n), boot_values(bootstrap_obs.size());
    {
      torch::NoGradGuard no_grad;
      const torch::Tensor v = m.critic->forward(obs_t).reshape({n}).contiguous();
      std::copy(v.data_ptr<float>(), v.data_ptr<float>() + n, values.begin());
      if (!bootstrap_obs.empty()) {
        const torch::Tensor b =
            m.critic->forward(FeaturesTensor(bootstrap_obs, o.features)).reshape({-1});
        std::copy(b.data_ptr<float>(), b.data_ptr<float>() + b.numel(), boot_values.begin());
      }
    }
    std::vector<float> advantages(n), returns(n);
    for (const Range& r : ranges) {
      double last = 0;
      for (size_t t = r.end; t-- > r.begin;) {
        double next_value = 0;
        if (t + 1 < r.end) {
          next_value = values[t + 1];
        } else if (r.bootstrap >= 0) {
          next_value = boot_values[r.bootstrap];
        }
        const double delta = rewards[t] + o.gamma * next_value - values[t];
        last = delta + o.gamma * o.gae_lambda * last;
        advantages[t] = static_cast<float>(last);
        returns[t] = static_cast<float>(last + values[t]);
      }
    }
    const torch::Tensor adv_t = torch::from_blob(advantages.data(), {n}).clone();
    const torch::Tensor ret_t = torch::from_blob(returns.data(), {n}).clone();
    // Imitating: the rule's decisions (this iteration's, or every imitated one's), each weighing
    // (its action's share of them)^-imitate_balance, normalised to a mean of 1.
    const int64_t imitated = static_cast<int64_t>(m.imitated_actions.size());
    torch::Tensor bc_obs, bc_actions, bc_weights, step_weights;
    if (imitate && imitated > 0) {
      std::vector<float> weight = ImitationWeights(
          m.imitated_actions, static_cast<int>(o.actions.size()), o.imitate_balance);
      const torch::Tensor action_weight =
          torch::from_blob(weight.data(), {static_cast<int64_t>(weight.size())}).clone();
      step_weights = action_weight.index_select(0, actions_t);
      if (o.imitate_aggregate) {  // the aggregated decisions are fitted apart from the steps
        bc_obs = FeaturesTensor(m.imitated_obs, o.features);
        bc_actions = torch::from_blob(m.imitated_actions.data(), {imitated}, torch::kLong).clone();
        bc_weights = action_weight.index_select(0, bc_actions);
      }
    }
    const int64_t minibatch = std::max<int64_t>(1, n / o.minibatches);
    // The aggregated decisions in as many minibatches as this iteration's steps make.
    const int64_t batches_per_epoch = (n + minibatch - 1) / minibatch;
    const int64_t bc_minibatch = (imitated + batches_per_epoch - 1) / batches_per_epoch;
    for (int epoch = 0; epoch < o.update_epochs; ++epoch) {
      const torch::Tensor order = torch::randperm(n, torch::kLong);
      const torch::Tensor bc_order = o.imitate_aggregate && imitate
                                         ? torch::randperm(imitated, torch::kLong)
                                         : torch::Tensor();
      double pg_sum = 0, v_sum = 0, ent_sum = 0, kl_sum = 0, clip_sum = 0;
      int batches = 0;
      for (int64_t begin = 0; begin < n; begin += minibatch) {
        const int64_t end = std::min(n, begin + minibatch);
        if (end - begin < minibatch / 2 && begin > 0) break;  // a sliver: left for the next epoch
        const torch::Tensor idx = order.slice(0, begin, end);
        const torch::Tensor mb_obs = obs_t.index_select(0, idx);
        const torch::Tensor mb_mask = decided_t.index_select(0, idx);
        torch::Tensor mb_adv = adv_t.index_select(0, idx);
        if (o.normalize_advantages) {
          const torch::Tensor mean = MaskedMean(mb_adv, mb_mask);
          const torch::Tensor var = MaskedMean((mb_adv - mean).pow(2), mb_mask);
          mb_adv = (mb_adv - mean) / (var.sqrt() + 1e-8);
        }
        const torch::Tensor log_probs = torch::log_softmax(m.actor->forward(mb_obs), 1);
        const torch::Tensor new_logp =
            log_probs.gather(1, actions_t.index_select(0, idx).unsqueeze(1)).squeeze(1);
        const torch::Tensor entropy = -(log_probs.exp() * log_probs).sum(1);
        const torch::Tensor log_ratio = new_logp - old_logp_t.index_select(0, idx);
        const torch::Tensor ratio = log_ratio.exp();
        const torch::Tensor pg1 = -mb_adv * ratio;
        const torch::Tensor pg2 = -mb_adv * torch::clamp(ratio, 1 - o.clip, 1 + o.clip);
        // Imitating, the policy loss is the cross-entropy of the rule's actions (weighted), with
        // no entropy bonus (the rule is deterministic); otherwise PPO's clipped surrogate.
        torch::Tensor pg_loss;
        if (!imitate) {
          pg_loss = MaskedMean(torch::max(pg1, pg2), mb_mask);
        } else if (!o.imitate_aggregate) {  // this iteration's decisions, the minibatch's
          pg_loss = -MaskedMean(
              o.imitate_balance > 0 ? new_logp * step_weights.index_select(0, idx) : new_logp,
              mb_mask);
        } else {
          const int64_t b = begin / minibatch;
          const torch::Tensor bc_idx = bc_order.slice(0, std::min(imitated, b * bc_minibatch),
                                                      std::min(imitated, (b + 1) * bc_minibatch));
          const torch::Tensor bc_logp =
              torch::log_softmax(m.actor->forward(bc_obs.index_select(0, bc_idx)), 1)
                  .gather(1, bc_actions.index_select(0, bc_idx).unsqueeze(1))
                  .squeeze(1);
          pg_loss = bc_idx.numel() > 0 ? -(bc_logp * bc_weights.index_select(0, bc_idx)).mean()
                                       : torch::zeros({});
        }
        const torch::Tensor ent = MaskedMean(entropy, mb_mask);
        const torch::Tensor v = m.critic->forward(mb_obs).reshape({-1});
        const torch::Tensor v_loss = 0.5 * (v - ret_t.index_select(0, idx)).pow(2).mean();
        torch::Tensor loss =
            pg_loss - (imitate ? 0.0 : o.entropy_coef) * ent + o.value_coef * v_loss;
        if (m.anchor) {
          // KL(anchor || actor) on the decided states: PPO may improve on the kickstart but pays
          // for leaving it.
          torch::Tensor anchor_logp;
          {
            torch::NoGradGuard no_grad;
            anchor_logp = torch::log_softmax(m.anchor->forward(mb_obs), 1);
          }
          const torch::Tensor kl = (anchor_logp.exp() * (anchor_logp - log_probs)).sum(1);
          loss = loss + o.kickstart_kl * MaskedMean(kl, mb_mask);
        }
        m.optimizer->zero_grad();
        loss.backward();
        // Each network's gradient norm clipped on its own: the critic's (returns of tens per
        // step) would otherwise starve the actor's under one joint norm.
        torch::nn::utils::clip_grad_norm_(m.actor->parameters(), o.max_grad_norm);
        torch::nn::utils::clip_grad_norm_(m.critic->parameters(), o.max_grad_norm);
        m.optimizer->step();
        {
          torch::NoGradGuard no_grad;
          pg_sum += pg_loss.item<double>();
          v_sum += v_loss.item<double>();
          ent_sum += ent.item<double>();
          kl_sum += MaskedMean((ratio - 1) - log_ratio, mb_mask).item<double>();
          clip_sum +=
              MaskedMean(((ratio - 1).abs() > o.clip).to(torch::kFloat), mb_mask).item<double>();
        }
        ++batches;
      }
      if (batches > 0) {
        stats.policy_loss = pg_sum / batches;
        stats.value_loss = v_sum / batches;
        stats.entropy = ent_sum / batches;
        stats.approx_kl = kl_sum / batches;
        stats.clip_fraction = clip_sum / batches;
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("libtorch: ", e.what()));
  }
  stats.update_wall_s = Seconds(update_start);
  for (EpisodeResult& e : episodes) e.trajectories.clear();
  stats.episodes = std::move(episodes);
  ++m.iteration;
  stats.wall_s = Seconds(m.start);
  return stats;
}

int64_t PpoTrainer::imitated_decisions() const {
  return static_cast<int64_t>(impl_->imitated_actions.size());
}

std::vector<float> ImitationWeights(const std::vector<int64_t>& actions, int num_actions,
                                    double balance) {
  std::vector<double> count(num_actions, 0);
  for (int64_t a : actions) count[a] += 1;
  std::vector<float> weight(num_actions, 0);
  double sum = 0;
  for (int a = 0; a < num_actions; ++a) {
    if (count[a] > 0) weight[a] = static_cast<float>(std::pow(count[a] / actions.size(), -balance));
    sum += weight[a] * count[a];
  }
  for (float& w : weight) w = static_cast<float>(w * actions.size() / sum);
  return weight;
}

std::vector<float> TorchForward(const control::Policy& policy, const std::vector<float>& inputs) {
  torch::NoGradGuard no_grad;
  const std::vector<control::Mlp::Layer>& layers = policy.mlp.layers();
  torch::nn::Sequential net;
  for (size_t i = 0; i < layers.size(); ++i) {
    const control::Mlp::Layer& l = layers[i];
    torch::nn::Linear linear(l.in, l.out);
    linear->weight.copy_(
        torch::from_blob(const_cast<float*>(l.weight.data()), {l.out, l.in}).clone());
    linear->bias.copy_(torch::from_blob(const_cast<float*>(l.bias.data()), {l.out}).clone());
    net->push_back(linear);
    if (i + 1 < layers.size()) net->push_back(torch::nn::Tanh());
  }
  const int64_t in = policy.mlp.inputs();
  const int64_t rows = static_cast<int64_t>(inputs.size()) / in;
  const torch::Tensor x = torch::from_blob(const_cast<float*>(inputs.data()), {rows, in}).clone();
  const torch::Tensor y = net->forward(x).contiguous();
  return std::vector<float>(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
}

std::string CurveCsvHeader() {
  return "iteration,steps,total_steps,decisions,mean_reward,mean_p99_over_slo,policy_loss,"
         "value_loss,entropy,approx_kl,clip_fraction,learning_rate,rollout_s,update_s,wall_s,"
         "rollout_cross_entropy,moved_share\n";
}

std::string CurveCsvRow(const IterationStats& s) {
  return absl::StrFormat(
      "%d,%d,%d,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.3e,%.3f,%.3f,%.3f,%.6f,%.4f\n", s.iteration,
      s.steps, s.total_steps, s.decisions, s.mean_reward, s.mean_p99_over_slo, s.policy_loss,
      s.value_loss, s.entropy, s.approx_kl, s.clip_fraction, s.learning_rate, s.rollout_wall_s,
      s.update_wall_s, s.wall_s, s.rollout_cross_entropy, s.moved_share);
}

}  // namespace helm::train
