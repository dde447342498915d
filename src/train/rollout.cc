#include "helm/train/rollout.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "helm/common/status.h"
#include "helm/sim/simulator.h"
#include "helm/sim/sweep.h"

namespace helm::train {
namespace {

// SplitMix64: decorrelates seeds derived from (run seed, index).
uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9e3779b97f4a7c15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

int32_t NearestAction(const std::vector<double>& actions, double delta) {
  int32_t best = 0;
  for (size_t a = 1; a < actions.size(); ++a) {
    if (std::abs(actions[a] - delta) < std::abs(actions[best] - delta)) {
      best = static_cast<int32_t>(a);
    }
  }
  return best;
}

std::vector<float> LogSoftmax(const std::vector<float>& logits) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max));
  const float log_sum = static_cast<float>(std::log(sum));
  std::vector<float> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - max - log_sum;
  return out;
}

TrainingController::TrainingController(const control::Policy& actor,
                                       const control::FeatureScales& scales,
                                       const control::ControlOptions& options, double r_min,
                                       double r_max, uint64_t seed,
                                       const control::RewardWeights& weights,
                                       std::unique_ptr<control::SplitController> teacher,
                                       bool actor_acts)
    : actor_(actor),
      scales_(scales),
      weights_(weights),
      extractor_(
          control::FeatureExtractor::For(actor_.mlp.inputs(), scales, options, r_min, r_max)),
      gate_(options.max_move, options.hold_windows, r_min, r_max),
      rng_(seed),
      teacher_(std::move(teacher)),
      actor_acts_(actor_acts),
      logits_(actor.actions.size()),
      hold_action_(NearestAction(actor_.actions, 0)) {}

double TrainingController::Decide(const serve::StatsWindow& window) {
  const control::Features features = extractor_.Extract(window);
  if (pending_) {
    // The window just closed is the one the previous decision governed.
    trajectory_.steps.back().reward =
        static_cast<float>(control::Reward(window, previous_target_, scales_, weights_).reward);
  }
  previous_target_ = window.target_split;
  Step step;
  step.features = features;
  if (teacher_ != nullptr) {
    // The teacher sees every window (it keeps averages) and obeys the same safety rules.
    step.target = teacher_->Decide(window);
    step.action = hold_action_;
    const bool in_flight = control::SafetyGate::MoveInFlight(window);
    if (!in_flight) {
      step.action = NearestAction(actor_.actions, step.target - window.target_split);
      actor_.mlp.Forward(features.data(), logits_.data());
      step.log_prob = LogSoftmax(logits_)[step.action];
      step.decided = true;
    }
    if (actor_acts_) {  // the actor's argmax acts; the teacher's choice stays the label
      double delta = 0;
      if (!in_flight) {  // the logits are this window's
        delta = actor_.actions[std::max_element(logits_.begin(), logits_.end()) - logits_.begin()];
      }
      step.target = gate_.Apply(window, delta);
    }
  } else if (control::SafetyGate::MoveInFlight(window)) {
    step.action = hold_action_;
    step.target = gate_.Apply(window, 0);
  } else {
    actor_.mlp.Forward(features.data(), logits_.data());
    const std::vector<float> log_probs = LogSoftmax(logits_);
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    double cumulative = 0;
    int32_t action = static_cast<int32_t>(log_probs.size()) - 1;
    for (size_t a = 0; a < log_probs.size(); ++a) {
      cumulative += std::exp(static_cast<double>(log_probs[a]));
      if (u < cumulative) {
        action = static_cast<int32_t>(a);
        break;
      }
    }
    step.action = action;
    step.log_prob = log_probs[action];
    step.decided = true;
    step.target = gate_.Apply(window, actor_.actions[action]);
  }
  trajectory_.steps.push_back(step);
  pending_ = true;
  return step.target;
}

Trajectory TrainingController::Finish() {
  Trajectory out = std::move(trajectory_);
  trajectory_ = Trajectory();
  if (pending_ && !out.steps.empty()) {
    out.bootstrap = out.steps.back().features;
    out.has_bootstrap = true;
    out.steps.pop_back();
  }
  pending_ = false;
  return out;
}

std::string EnvSpec::ToString() const {
  std::string out = absl::StrFormat("%s/%s scale %g load %.2f nodes %d %s split0 %.2f seed %d",
                                    profile, regime, scale, load, nodes, gpu, initial_split, seed);
  if (host_gather > 0) absl::StrAppendFormat(&out, " host gather %.3g GB/s", host_gather / 1e9);
  return out;
}

EnvSpec SampleEnv(const TrainOptions& o, std::mt19937_64& rng) {
  auto pick = [&rng](const auto& list) {
    return list[std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng)];
  };
  auto uniform = [&rng](double lo, double hi) {
    return lo + (hi - lo) * std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  };
  EnvSpec e;
  e.profile = pick(o.profiles);
  e.regime = pick(o.regimes);
  e.scale = pick(o.scales);
  e.load = uniform(o.load_min, o.load_max);
  e.nodes = std::uniform_int_distribution<int32_t>(o.nodes_min, o.nodes_max)(rng);
  e.gpu = pick(o.gpus);
  e.initial_split = uniform(o.initial_split_min, o.initial_split_max);
  e.seed = rng();
  // Drawn last, and only from a real choice, so that configs without one replay as before.
  e.host_gather = o.host_gathers.size() > 1 ? pick(o.host_gathers) : o.host_gathers.front();
  return e;
}

std::vector<EnvSpec> IterationEnvs(const TrainOptions& o, int iteration) {
  std::mt19937_64 rng(Mix(o.seed, o.same_envs_each_iteration ? 0 : iteration));
  std::vector<EnvSpec> envs;
  for (int i = 0; i < o.episodes_per_iteration; ++i) envs.push_back(SampleEnv(o, rng));
  return envs;
}

absl::StatusOr<config::Config> EnvConfig(const config::Config& base, const TrainOptions& o,
                                         const EnvSpec& env, sim::CapacityRuns* capacities) {
  config::Config sized = base;
  sized.simulator.num_nodes = env.nodes;  // the cell's users are sized per node
  HELM_ASSIGN_OR_RETURN(sim::CellConfig cell,
                        sim::ConfigForCell(sized, env.profile, env.regime, env.scale));
  config::Config c = std::move(cell.config);
  c.simulator.gpu = env.gpu;
  c.simulator.calibration_path.clear();
  c.simulator.host_gather_bytes_per_s = env.host_gather;
  c.simulator.load = env.load;
  c.simulator.seed = env.seed;
  c.simulator.duration_s = o.episode_s;
  c.workload.duration_s = o.episode_s;
  c.simulator.sweep_profiles.clear();
  c.pool.initial_split = std::clamp(env.initial_split, c.pool.r_min, c.pool.r_max);
  // The trainer's hook installs every node's controller; a policy that reads the model's features,
  // or the predictive teacher, needs the nodes to keep the miniature caches the model reads
  // (control::NeedsReuseTracking).
  c.control.policy =
      control::ReadsModel(o.features) || o.teacher == "predictive" ? "predictive" : "static";
  c.control.slo_ms = c.workload.slo_ms;
  if (o.capacity_s > 0) {
    config::Config probe = c;
    probe.simulator.seed = o.seed;  // the cluster's capacity, not the episode's draw
    probe.simulator.sweep_capacity_s = o.capacity_s;
    sim::CapacityRuns once;
    HELM_ASSIGN_OR_RETURN(
        const double capacity,
        (capacities != nullptr ? capacities : &once)->Measure(probe, {0.1, 0.5, 0.9}));
    HELM_ASSIGN_OR_RETURN(c.workload.rate_per_s, sim::RateForLoad(c, capacity));
    c.simulator.load = 0;
    if (o.slo_batches > 0 && capacity > 0) {
      c.workload.slo_ms = c.control.slo_ms =
          o.slo_batches * c.node.max_batch * c.simulator.num_nodes / capacity * 1000;
    }
  }
  return c;
}

absl::StatusOr<EpisodeResult> RunEpisode(const config::Config& base, const TrainOptions& options,
                                         const EnvSpec& env, const control::Policy& actor,
                                         sim::CapacityRuns* capacities, Acting acting) {
  const auto start = std::chrono::steady_clock::now();
  HELM_ASSIGN_OR_RETURN(config::Config c, EnvConfig(base, options, env, capacities));
  HELM_ASSIGN_OR_RETURN(const double rate_per_s, sim::OfferedRate(c));
  HELM_ASSIGN_OR_RETURN(std::unique_ptr<sim::Simulator> simulator, sim::Simulator::Create(c));
  // Owned by the node cores, which the simulator keeps until it is destroyed below.
  std::vector<TrainingController*> controllers(env.nodes, nullptr);
  sim::SimulatorHooks hooks;
  hooks.controller = [&](int node, const control::FeatureScales& scales) {
    std::unique_ptr<control::SplitController> teacher;
    const bool imitate = acting != Acting::kActor;
    if (imitate && options.teacher == "predictive") {
      teacher = std::make_unique<control::PredictiveController>(c.control, scales, c.pool.r_min,
                                                                c.pool.r_max);
    } else if (imitate) {
      teacher =
          std::make_unique<control::MarginalController>(c.control, c.pool.r_min, c.pool.r_max);
    }
    auto controller = std::make_unique<TrainingController>(
        actor, scales, c.control, c.pool.r_min, c.pool.r_max, Mix(env.seed, 1000 + node),
        control::RewardWeights{}, std::move(teacher), acting == Acting::kActorLabelledByTeacher);
    controllers[node] = controller.get();
    return std::unique_ptr<control::SplitController>(std::move(controller));
  };
  HELM_ASSIGN_OR_RETURN(sim::SimResult result, simulator->Run(hooks));
  EpisodeResult out;
  out.env = env;
  for (TrainingController* controller : controllers) {
    if (controller == nullptr) continue;
    Trajectory t = controller->Finish();
    for (const Step& s : t.steps) {
      out.reward_sum += s.reward;
      out.decisions += s.decided ? 1 : 0;
    }
    out.steps += static_cast<int64_t>(t.steps.size());
    out.trajectories.push_back(std::move(t));
  }
  out.rate_per_s = rate_per_s;
  out.slo_ms = c.workload.slo_ms;
  out.p99_ms = result.latency_us.Quantile(0.99) / 1000.0;
  out.slo_attainment = result.slo_attainment();
  out.simulated_s = result.simulated_s;
  simulator.reset();
  out.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

absl::StatusOr<std::vector<EpisodeResult>> CollectRollouts(
    const config::Config& base, const TrainOptions& options, const std::vector<EnvSpec>& envs,
    const control::Policy& actor, int threads, sim::CapacityRuns* capacities, Acting acting) {
  std::vector<absl::StatusOr<EpisodeResult>> results(envs.size(), absl::UnknownError("not run"));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next.fetch_add(1); i < envs.size(); i = next.fetch_add(1)) {
      results[i] = RunEpisode(base, options, envs[i], actor, capacities, acting);
    }
  };
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(envs.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  std::vector<EpisodeResult> out;
  out.reserve(envs.size());
  for (size_t i = 0; i < envs.size(); ++i) {
    if (!results[i].ok()) {
      return absl::Status(results[i].status().code(),
                          absl::StrCat(envs[i].ToString(), ": ", results[i].status().message()));
    }
    out.push_back(*std::move(results[i]));
  }
  return out;
}

std::string EpisodeCsvHeader() {
  return "iteration,profile,regime,scale,load,nodes,gpu,host_gather_bytes_per_s,initial_split,"
         "rate_per_s,slo_ms,p99_ms,slo_attainment,steps,mean_reward\n";
}

std::string EpisodeCsvRow(int32_t iteration, const EpisodeResult& e) {
  const EnvSpec& v = e.env;
  return absl::StrFormat("%d,%s,%s,%g,%.4f,%d,%s,%g,%.4f,%.1f,%.4f,%.4f,%.6f,%d,%.6f\n", iteration,
                         v.profile, v.regime, v.scale, v.load, v.nodes, v.gpu, v.host_gather,
                         v.initial_split, e.rate_per_s, e.slo_ms, e.p99_ms, e.slo_attainment,
                         e.steps, e.steps > 0 ? e.reward_sum / static_cast<double>(e.steps) : 0.0);
}

}  // namespace helm::train
