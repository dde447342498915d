#include "helm/train/options.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "helm/config/yaml_reader.h"
#include "helm/workload/profile.h"
#include "yaml-cpp/yaml.h"

namespace helm::train {

absl::Status TrainOptions::Validate() const {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (load_min > load_max) return bad("load_min: must be <= train.load_max");
  if (imitate_iterations > iterations) {
    return bad("imitate_iterations: must be <= train.iterations");
  }
  if (dagger_iterations > imitate_iterations) {
    return bad("dagger_iterations: must be <= train.imitate_iterations");
  }
  if (slo_batches > 0 && capacity_s <= 0) {
    return bad("slo_batches: needs train.capacity_s > 0 (the SLO is set from the capacity)");
  }
  if (nodes_min > nodes_max) return bad("nodes_min: must be <= train.nodes_max");
  if (initial_split_min > initial_split_max) {
    return bad("initial_split_min: must be <= train.initial_split_max");
  }
  if (profiles.empty()) return bad("profiles: must not be empty");
  for (const std::string& p : profiles) {
    if (!workload::FindProfile(p).ok()) {
      return bad(absl::StrCat("profiles: unknown workload profile '", p, "'"));
    }
  }
  if (regimes.empty()) return bad("regimes: must not be empty");
  for (const std::string& r : regimes) {
    if (r != "steady" && r != "trend" && r != "burst") {
      return bad(absl::StrCat("regimes: '", r, "' must be one of {steady, trend, burst}"));
    }
  }
  if (scales.empty()) return bad("scales: must not be empty");
  for (double s : scales) {
    if (!(s > 0)) return bad(absl::StrCat("scales: each must be > 0, got ", s));
  }
  if (gpus.empty()) return bad("gpus: must not be empty");
  for (const std::string& g : gpus) {
    if (g != "a100" && g != "h100" && g != "cpu") {
      return bad(absl::StrCat("gpus: '", g, "' must be one of {a100, h100, cpu}"));
    }
  }
  if (host_gathers.empty()) return bad("host_gathers: must not be empty");
  for (double g : host_gathers) {
    if (!(g >= 0) || !std::isfinite(g)) {
      return bad(absl::StrCat("host_gathers: each must be >= 0 bytes/s, got ", g));
    }
  }
  if (actions.size() < 2) return bad("actions: needs at least two split changes");
  for (double a : actions) {
    if (std::abs(a) > 0.5) return bad(absl::StrCat("actions: each must be in [-0.5, 0.5]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainConfig> ParseTrainConfig(const std::string& yaml_text,
                                             const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (root && !root.IsNull() && !root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a map of sections"));
  }
  TrainConfig out;
  std::vector<std::string> errors;
  YAML::Node rest(YAML::NodeType::Map);
  YAML::Node train;
  if (root && root.IsMap()) {
    for (const auto& entry : root) {
      const std::string key = entry.first.as<std::string>();
      if (key == "train") {
        train = entry.second;
      } else {
        rest[key] = entry.second;
      }
    }
  }
  if (train && !train.IsNull() && !train.IsMap()) {
    errors.push_back("train: expected a map of options");
  } else {
    try {
      config::Reader::ReadStruct(train, "train", out.train, &errors);  // and Validate
    } catch (const YAML::Exception& e) {
      errors.push_back(absl::StrCat("train: malformed YAML: ", e.what()));
    }
  }
  YAML::Emitter emitter;
  emitter << rest;
  absl::StatusOr<config::Config> base = config::ParseConfig(emitter.c_str(), source);
  if (!base.ok()) {
    // ParseConfig prefixes its own errors with the source.
    errors.emplace_back(base.status().message());
  } else {
    out.base = *std::move(base);
    if (absl::Status s = out.base.Validate(); !s.ok()) errors.emplace_back(s.message());
  }
  if (!errors.empty()) {
    std::vector<std::string> lines;
    for (const std::string& e : errors) {
      lines.push_back(e.rfind(source, 0) == 0 ? e : absl::StrCat(source, ": ", e));
    }
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }
  return out;
}

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path,
                                            const std::vector<std::string>& settings) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<std::string> text = config::ApplySettings(buffer.str(), settings);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", text.status().message()));
  }
  return ParseTrainConfig(*text, path);
}

}  // namespace helm::train
