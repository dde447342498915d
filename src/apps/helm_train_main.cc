// helm-train: trains the split controller's base policy with PPO in the simulator (issue 13
// "Training"; train/ppo.h, train/rollout.h) and writes it as a helm-policy-v1 file a node loads
// (control.policy_path).
//
//   helm-train --config configs/train/base.yaml --out DIR [--iterations N] [--envs N] [--seed S]
//
// Writes to DIR: policy.json (the actor, rewritten after every iteration), curve.csv (one row per
// iteration), episodes.csv (one row per episode: its draw, offered rate, P99 and mean reward),
// curve.png (scripts/plot_train.py) and manifest.json (command, seed, revision, final
// reward, iterations, steps, wall time, machine). Prints a progress line per iteration. A bad flag
// or config key: the message names it, exit status 2.
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/report.h"
#include "helm/common/process.h"
#include "helm/common/subprocess.h"
#include "helm/control/policy.h"
#include "helm/train/options.h"
#include "helm/train/ppo.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace {

std::string Machine() {
  utsname u{};
  std::string cpu;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  uname(&u);
  return absl::StrCat(u.sysname, " ", u.release, " ", u.machine, ", ",
                      std::thread::hardware_concurrency(), " cores", cpu.empty() ? "" : ", ", cpu);
}

bool WriteFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!(out << text)) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  CLI::App cli("helm-train: PPO training of the split controller's base policy in the simulator");
  std::string config_path, out_dir;
  int32_t iterations = 0, envs = 0, episodes = 0;
  int64_t seed = -1;
  std::string python = "/usr/bin/python3";
  std::string plot_script = std::string(HELM_SOURCE_DIR) + "/scripts/plot_train.py";
  bool no_plot = false;
  std::vector<std::string> settings;
  cli.add_option("--config", config_path, "training config (YAML; configs/train/base.yaml)")
      ->required();
  cli.add_option("--set", settings,
                 "section.key=value, as if the config said so (repeatable; train.* too, e.g. "
                 "--set train.dagger_iterations=20)");
  cli.add_option("--out", out_dir, "directory for policy.json, curve.csv, curve.png, manifest")
      ->required();
  cli.add_option("--iterations", iterations, "PPO iterations (overrides train.iterations)")
      ->check(CLI::Range(1, 1000000));
  cli.add_option("--envs", envs, "episodes run at once (overrides train.envs)")
      ->check(CLI::Range(1, 256));
  cli.add_option("--episodes", episodes,
                 "episodes per iteration (overrides train.episodes_per_iteration)")
      ->check(CLI::Range(1, 100000));
  cli.add_option("--seed", seed, "random seed (overrides train.seed)")
      ->check(CLI::Range(int64_t{0}, INT64_MAX));
  cli.add_option("--python", python, "python with matplotlib for the plot");
  cli.add_option("--plot-script", plot_script, "the plot script");
  cli.add_flag("--no-plot", no_plot, "write no plot");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    cli.exit(e);
    return 2;
  }

  absl::StatusOr<helm::train::TrainConfig> loaded =
      helm::train::LoadTrainConfig(config_path, settings);
  if (!loaded.ok()) {
    std::fprintf(stderr, "helm-train: config error: %s\n",
                 std::string(loaded.status().message()).c_str());
    return 2;
  }
  helm::train::TrainConfig config = *std::move(loaded);
  if (iterations > 0) config.train.iterations = iterations;
  if (envs > 0) config.train.envs = envs;
  if (episodes > 0) config.train.episodes_per_iteration = episodes;
  if (seed >= 0) config.train.seed = static_cast<uint64_t>(seed);
  // The nodes' own logs (pool creation...) would drown the progress lines.
  spdlog::set_level(spdlog::level::warn);

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    std::fprintf(stderr, "helm-train: --out %s: %s\n", out_dir.c_str(), ec.message().c_str());
    return 2;
  }
  absl::StatusOr<std::unique_ptr<helm::train::PpoTrainer>> trainer =
      helm::train::PpoTrainer::Create(config);
  if (!trainer.ok()) {
    std::fprintf(stderr, "helm-train: %s\n", std::string(trainer.status().message()).c_str());
    return absl::IsInvalidArgument(trainer.status()) ? 2 : 1;
  }
  const helm::train::TrainOptions& o = config.train;
  std::vector<std::string> args(argv, argv + argc);
  const std::string command = absl::StrJoin(args, " ");
  std::fprintf(stderr,
               "helm-train: %d iterations x %d episodes of %.0f simulated s on %d threads, seed "
               "%llu; profiles %s, regimes %s, load %.2f-%.2f, nodes %d-%d\n",
               o.iterations, o.episodes_per_iteration, o.episode_s, o.envs,
               static_cast<unsigned long long>(o.seed), absl::StrJoin(o.profiles, ",").c_str(),
               absl::StrJoin(o.regimes, ",").c_str(), o.load_min, o.load_max, o.nodes_min,
               o.nodes_max);

  // The manifest, rewritten after every iteration (a run stopped early still describes its
  // policy.json). The final reward: the mean of the last 5 iterations (each draws new
  // environments); the first: of the first 5.
  const std::string revision = helm::GitRevision(HELM_SOURCE_DIR);  // HEAD when training started
  auto write_manifest = [&](const helm::train::IterationStats& last,
                            const std::vector<double>& rewards) {
    const size_t tail = std::min<size_t>(5, rewards.size());
    double final_reward = 0, first_reward = 0;
    for (size_t i = rewards.size() - tail; i < rewards.size(); ++i) final_reward += rewards[i];
    for (size_t i = 0; i < tail; ++i) first_reward += rewards[i];
    final_reward /= tail;
    first_reward /= tail;
    nlohmann::ordered_json manifest;
    manifest["format"] = "helm-policy-manifest-v1";
    manifest["policy"] = "policy.json";
    manifest["command"] = command;
    manifest["config"] = config_path;
    manifest["seed"] = o.seed;
    manifest["git_revision"] = revision;
    manifest["iterations"] = last.iteration;
    manifest["iterations_planned"] = o.iterations;
    manifest["imitate_iterations"] = o.imitate_iterations;
    if (o.imitate_iterations > 0) {
      manifest["teacher"] = o.teacher;
      manifest["imitate_aggregate"] = o.imitate_aggregate;
      manifest["imitate_balance"] = o.imitate_balance;
      manifest["dagger_iterations"] = o.dagger_iterations;
    }
    manifest["features"] = o.features;
    manifest["episodes_per_iteration"] = o.episodes_per_iteration;
    manifest["episode_s"] = o.episode_s;
    manifest["steps"] = last.total_steps;
    manifest["first_mean_reward_5"] = first_reward;
    manifest["final_mean_reward_5"] = final_reward;
    manifest["training_wall_s"] = last.wall_s;
    manifest["envs"] = o.envs;
    manifest["machine"] = Machine();
    manifest["ppo"] = {{"clip", o.clip},
                       {"gamma", o.gamma},
                       {"gae_lambda", o.gae_lambda},
                       {"entropy_coef", o.entropy_coef},
                       {"value_coef", o.value_coef},
                       {"update_epochs", o.update_epochs},
                       {"minibatches", o.minibatches},
                       {"learning_rate", o.learning_rate},
                       {"anneal_lr", o.anneal_lr},
                       {"max_grad_norm", o.max_grad_norm},
                       {"hidden", o.hidden},
                       {"actions", o.actions}};
    if (!WriteFile(out_dir + "/manifest.json", manifest.dump(2) + "\n")) {
      std::fprintf(stderr, "helm-train: cannot write %s/manifest.json\n", out_dir.c_str());
      return false;
    }
    return true;
  };

  const std::string csv_path = out_dir + "/curve.csv";
  const std::string policy_path = out_dir + "/policy.json";
  std::string csv = helm::train::CurveCsvHeader();
  const std::string episodes_path = out_dir + "/episodes.csv";
  std::string episodes_csv = helm::train::EpisodeCsvHeader();
  std::vector<double> rewards;
  helm::train::IterationStats last;
  for (int i = 0; i < o.iterations; ++i) {
    absl::StatusOr<helm::train::IterationStats> stats = (*trainer)->Iterate();
    if (!stats.ok()) {
      std::fprintf(stderr, "helm-train: iteration %d: %s\n", i + 1,
                   stats.status().ToString().c_str());
      return absl::IsInvalidArgument(stats.status()) ? 2 : 1;
    }
    last = *stats;
    rewards.push_back(last.mean_reward);
    std::printf(
        "[iter %3d/%d]%s steps %5lld (total %7lld, %4.0f%% decided) reward %8.4f p99/slo %6.3f | "
        "pg %7.4f v %8.4f ent %5.3f kl %6.4f clip %4.2f ce %5.3f moves %4.2f lr %.2e | "
        "rollout %5.1f s update %4.1f s wall %6.0f s\n",
        last.iteration, o.iterations, last.iteration <= o.imitate_iterations ? " imitate" : "",
        static_cast<long long>(last.steps), static_cast<long long>(last.total_steps),
        last.steps > 0 ? 100.0 * last.decisions / last.steps : 0.0, last.mean_reward,
        last.mean_p99_over_slo, last.policy_loss, last.value_loss, last.entropy, last.approx_kl,
        last.clip_fraction, last.rollout_cross_entropy, last.moved_share, last.learning_rate,
        last.rollout_wall_s, last.update_wall_s, last.wall_s);
    std::fflush(stdout);
    csv += helm::train::CurveCsvRow(last);
    for (const helm::train::EpisodeResult& e : last.episodes) {
      episodes_csv += helm::train::EpisodeCsvRow(last.iteration, e);
    }
    if (!WriteFile(csv_path, csv) || !WriteFile(episodes_path, episodes_csv) ||
        !WriteFile(policy_path, helm::control::PolicyToJson((*trainer)->Actor()) + "\n")) {
      std::fprintf(stderr, "helm-train: cannot write to %s\n", out_dir.c_str());
      return 1;
    }
    if (!write_manifest(last, rewards)) return 1;
  }

  std::printf("files: %s, %s, %s/manifest.json\n", policy_path.c_str(), csv_path.c_str(),
              out_dir.c_str());
  if (!no_plot) {
    const absl::Status plotted =
        helm::bench::MakePlot(python, plot_script, csv_path, out_dir + "/curve.png");
    if (plotted.ok()) {
      std::printf("plot: %s/curve.png\n", out_dir.c_str());
    } else {
      std::printf("plot skipped: %s\n", std::string(plotted.message()).c_str());
    }
  }
  const size_t tail = std::min<size_t>(5, rewards.size());
  double final_reward = 0, first_reward = 0;
  for (size_t i = rewards.size() - tail; i < rewards.size(); ++i) final_reward += rewards[i] / tail;
  for (size_t i = 0; i < tail; ++i) first_reward += rewards[i] / tail;
  std::printf("HELM_RESULT train_first_mean_reward %.4f\n", first_reward);
  std::printf("HELM_RESULT train_final_mean_reward %.4f\n", final_reward);
  std::printf("HELM_RESULT train_wall_s %.1f\n", last.wall_s);
  std::printf("HELM_RESULT train_steps %lld\n", static_cast<long long>(last.total_steps));
  return 0;
}
