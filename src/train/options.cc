#include "helm/train/options.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "helm/workload/profile.h"
#include "yaml-cpp/yaml.h"

namespace helm::train {
namespace {

// Reads the train section into TrainOptions through its Describe (the HELM sections' reader lives
// in src/config, private to it), collecting every error with its key path.
class Reader {
 public:
  Reader(const YAML::Node& node, std::vector<std::string>* errors) : node_(node), errors_(errors) {}

  template <typename T>
  void Field(const char* key, T& field, const char* /*doc*/, config::Check<T> check = {}) {
    known_.insert(key);
    const std::string path = absl::StrCat("train.", key);
    if (node_ && node_.IsMap() && node_[key]) {
      std::string error;
      try {
        error = Parse(node_[key], &field);
      } catch (const YAML::Exception&) {
        error = "malformed value";
      }
      if (!error.empty()) {
        errors_->push_back(absl::StrCat(path, ": ", error));
        return;
      }
    }
    if (check) {
      const std::string error = check(field);
      if (!error.empty()) errors_->push_back(absl::StrCat(path, ": ", error));
    }
  }

  void CheckUnknownKeys() {
    if (!node_ || !node_.IsMap()) return;
    for (const auto& entry : node_) {
      const std::string key = entry.first.as<std::string>();
      if (known_.count(key) == 0) {
        errors_->push_back(absl::StrCat("unknown key 'train.", key,
                                        "'; known keys here: ", absl::StrJoin(known_, ", ")));
      }
    }
  }

 private:
  template <typename T>
  static std::string Parse(const YAML::Node& n, T* out) {
    if constexpr (std::is_same_v<T, bool>) {
      if (!n.IsScalar()) return "expected true or false";
      const std::string s = n.Scalar();
      if (s == "true")
        *out = true;
      else if (s == "false")
        *out = false;
      else
        return absl::StrCat("expected true or false, got '", s, "'");
      return "";
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (!n.IsSequence()) return "expected a list of strings";
      out->clear();
      for (const auto& e : n) {
        if (!e.IsScalar()) return "expected a list of strings";
        out->push_back(e.Scalar());
      }
      return "";
    } else if constexpr (std::is_same_v<T, std::vector<double>>) {
      if (!n.IsSequence()) return "expected a list of numbers";
      out->clear();
      for (const auto& e : n) {
        double v = 0;
        if (!e.IsScalar() || !YAML::convert<double>::decode(e, v) || !std::isfinite(v)) {
          return "expected a list of numbers";
        }
        out->push_back(v);
      }
      return "";
    } else if constexpr (std::is_integral_v<T>) {
      if (!n.IsScalar()) return "expected an integer";
      long long v = 0;
      std::istringstream in(n.Scalar());
      if (!(in >> v) || !in.eof())
        return absl::StrCat("expected an integer, got '", n.Scalar(), "'");
      if (std::is_unsigned_v<T> && v < 0) return "expected a non-negative integer";
      *out = static_cast<T>(v);
      return "";
    } else {
      static_assert(std::is_same_v<T, double>);
      double v = 0;
      if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v)) {
        return absl::StrCat("expected a number, got '", n.IsScalar() ? n.Scalar() : "", "'");
      }
      *out = v;
      return "";
    }
  }

  YAML::Node node_;
  std::vector<std::string>* errors_;
  std::set<std::string> known_;
};

}  // namespace

absl::Status TrainOptions::Validate() const {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (load_min > load_max) return bad("train.load_min: must be <= train.load_max");
  if (nodes_min > nodes_max) return bad("train.nodes_min: must be <= train.nodes_max");
  if (initial_split_min > initial_split_max) {
    return bad("train.initial_split_min: must be <= train.initial_split_max");
  }
  if (profiles.empty()) return bad("train.profiles: must not be empty");
  for (const std::string& p : profiles) {
    if (!workload::FindProfile(p).ok()) {
      return bad(absl::StrCat("train.profiles: unknown workload profile '", p, "'"));
    }
  }
  if (regimes.empty()) return bad("train.regimes: must not be empty");
  for (const std::string& r : regimes) {
    if (r != "steady" && r != "trend" && r != "burst") {
      return bad(absl::StrCat("train.regimes: '", r, "' must be one of {steady, trend, burst}"));
    }
  }
  if (scales.empty()) return bad("train.scales: must not be empty");
  for (double s : scales) {
    if (!(s > 0)) return bad(absl::StrCat("train.scales: each must be > 0, got ", s));
  }
  if (gpus.empty()) return bad("train.gpus: must not be empty");
  for (const std::string& g : gpus) {
    if (g != "a100" && g != "h100") {
      return bad(absl::StrCat("train.gpus: '", g, "' must be one of {a100, h100}"));
    }
  }
  if (actions.size() < 2) return bad("train.actions: needs at least two split changes");
  for (double a : actions) {
    if (std::abs(a) > 0.5) return bad(absl::StrCat("train.actions: each must be in [-0.5, 0.5]"));
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
    Reader reader(train, &errors);
    const size_t before = errors.size();
    out.train.Describe(reader);
    reader.CheckUnknownKeys();
    if (errors.size() == before) {
      if (absl::Status s = out.train.Validate(); !s.ok()) errors.emplace_back(s.message());
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

absl::StatusOr<TrainConfig> LoadTrainConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config file '", path, "'"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseTrainConfig(buffer.str(), path);
}

}  // namespace helm::train
