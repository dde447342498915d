#include "helm/config/config.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "helm/common/dtype.h"
#include "helm/config/yaml_reader.h"
#include "yaml-cpp/yaml.h"

namespace helm::config {

bool ParseInteger(std::string text, int64_t* out) {
  text = std::string(absl::StripAsciiWhitespace(text));
  static const std::pair<const char*, int64_t> kSuffixes[] = {{"KiB", int64_t{1} << 10},
                                                              {"MiB", int64_t{1} << 20},
                                                              {"GiB", int64_t{1} << 30},
                                                              {"TiB", int64_t{1} << 40}};
  int64_t scale = 1;
  for (const auto& [suffix, factor] : kSuffixes) {
    if (absl::EndsWith(text, suffix)) {
      text = std::string(absl::StripAsciiWhitespace(text.substr(0, text.size() - strlen(suffix))));
      scale = factor;
      break;
    }
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) return false;
  if (value != 0 && (value > std::numeric_limits<int64_t>::max() / scale ||
                     value < std::numeric_limits<int64_t>::min() / scale)) {
    return false;
  }
  *out = value * scale;
  return true;
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

void Reader::CheckUnknownKeys() {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& entry : node_) {
    const std::string key = entry.first.as<std::string>();
    if (known_.count(key)) continue;
    std::string closest;
    size_t best = 3;  // suggest only near misses (typos)
    for (const auto& k : known_) {
      const size_t d = EditDistance(key, k);
      if (d < best) {
        best = d;
        closest = k;
      }
    }
    errors_->push_back(absl::StrCat(
        "unknown key '", JoinPath(path_, key), "'",
        closest.empty() ? "" : absl::StrCat(" (did you mean '", JoinPath(path_, closest), "'?)"),
        "; known keys here: ", absl::StrJoin(known_, ", ")));
  }
}

namespace {

std::string YamlScalar(const std::string& s) {
  YAML::Emitter out;
  out << YAML::DoubleQuoted << s;
  return out.c_str();
}

template <typename T>
std::string YamlValue(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return YamlScalar(v);
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::vector<std::string> quoted;
    for (const auto& s : v) quoted.push_back(YamlScalar(s));
    return absl::StrCat("[", absl::StrJoin(quoted, ", "), "]");
  } else {
    return absl::StrCat(v);
  }
}

// Visitor that writes a described struct as commented YAML.
class Writer {
 public:
  Writer(std::ostringstream* out, int indent) : out_(out), indent_(indent) {}

  template <typename T>
  void Field(const char* key, T& field, const char* doc, Check<T> = {}) {
    *out_ << std::string(indent_, ' ') << key << ": " << YamlValue(field) << "  # " << doc << "\n";
  }

  template <typename S>
  void Section(const char* key, S& section, const char* doc) {
    *out_ << std::string(indent_, ' ') << key << ":  # " << doc << "\n";
    Writer child(out_, indent_ + 2);
    section.Describe(child);
  }

 private:
  std::ostringstream* out_;
  int indent_;
};

}  // namespace

int64_t KvBlockBytes(const model::ModelOptions& model, const kv::KvOptions& kv) {
  absl::StatusOr<Dtype> dtype = ParseDtype(kv.dtype);
  if (!dtype.ok()) return 0;
  return int64_t{model.num_layers} * kv.tokens_per_block * model.num_heads *
         (model.d_qk + model.d_v) * DtypeBytes(*dtype);
}

absl::Status Config::Validate() const {
  const int64_t block_bytes = KvBlockBytes(model, kv);
  if (block_bytes > pool.chunk_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv.tokens_per_block: a KV block (", block_bytes, " bytes for ",
                     model.num_layers, " layers x ", kv.tokens_per_block,
                     " tokens) must fit in pool.chunk_bytes (", pool.chunk_bytes, ")"));
  }
  const int64_t row_bytes =
      int64_t{emb.dim} * DtypeBytes(ParseDtype(emb.dtype).value_or(Dtype::kFp32));
  if (row_bytes > pool.chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("emb.dim: a row (", row_bytes,
                                                   " bytes) must fit in pool.chunk_bytes (",
                                                   pool.chunk_bytes, ")"));
  }
  if (control.min_step > control.step) {
    return absl::InvalidArgumentError(absl::StrCat("control.min_step: must be <= control.step (",
                                                   control.step, "), got ", control.min_step));
  }
  if (absl::Status valid = control.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("control.", valid.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (root && !root.IsNull() && !root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a map of sections"));
  }
  Config config;
  std::vector<std::string> errors;
  try {
    Reader::ReadStruct(root, "", config, &errors);
  } catch (const YAML::Exception& e) {
    errors.push_back(absl::StrCat("malformed YAML: ", e.what()));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", absl::StrJoin(errors, absl::StrCat("\n", source, ": "))));
  }
  return config;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path,
                                      const std::vector<std::string>& settings) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (settings.empty()) return ParseConfig(buffer.str(), path);
  absl::StatusOr<std::string> text = ApplySettings(buffer.str(), settings);
  if (!text.ok()) return text.status();
  return ParseConfig(*text, absl::StrCat(path, " with --set"));
}

absl::StatusOr<std::string> ApplySettings(const std::string& yaml_text,
                                          const std::vector<std::string>& settings) {
  if (settings.empty()) return yaml_text;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config is not YAML: ", e.what()));
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const std::string& setting : settings) {
    const size_t eq = setting.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set '", setting, "': expected section.key=value"));
    }
    const std::vector<std::string> path = absl::StrSplit(setting.substr(0, eq), '.');
    YAML::Node value;
    try {
      value = YAML::Load(setting.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set '", setting, "': the value is not YAML: ", e.what()));
    }
    // Walk (and make) the sections. Assigning to a YAML::Node writes through to the node it refers
    // to, so each step keeps its own handle rather than reassigning one.
    std::vector<YAML::Node> chain = {root};
    for (size_t i = 0; i < path.size(); ++i) {
      if (path[i].empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set '", setting, "': empty name in the key"));
      }
      YAML::Node& at = chain.back();
      if (at.IsDefined() && !at.IsMap() && !at.IsNull()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set '", setting, "': '",
                         absl::StrJoin(path.begin(), path.begin() + i, "."), "' is not a section"));
      }
      if (i + 1 == path.size()) {
        at[path[i]] = value;
      } else {
        chain.push_back(at[path[i]]);
      }
    }
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str());
}

std::string ConfigToYaml(const Config& config) {
  std::ostringstream out;
  Writer writer(&out, 0);
  Config copy = config;  // Describe takes non-const references; the writer only reads.
  copy.Describe(writer);
  return out.str();
}

std::string FitWorkloadToNodes(Config& config) {
  workload::WorkloadOptions& w = config.workload;
  if (w.max_items > config.emb.num_items) {
    return absl::StrCat("workload.max_items (", w.max_items, ") exceeds emb.num_items (",
                        config.emb.num_items, "): item ids must be < emb.num_items");
  }
  if (w.max_items == 0) w.max_items = config.emb.num_items;
  if (w.max_history > config.node.max_history) {
    return absl::StrCat("workload.max_history (", w.max_history, ") exceeds node.max_history (",
                        config.node.max_history, "): the nodes would reject the requests");
  }
  if (w.max_history == 0) w.max_history = config.node.max_history;
  if (w.candidates > config.node.max_candidates) {
    return absl::StrCat("workload.candidates (", w.candidates, ") exceeds node.max_candidates (",
                        config.node.max_candidates, ")");
  }
  if (w.num_actions > config.model.num_actions) {
    return absl::StrCat("workload.num_actions (", w.num_actions, ") exceeds model.num_actions (",
                        config.model.num_actions, ")");
  }
  if (w.top_k > w.candidates) {
    return absl::StrCat("workload.top_k (", w.top_k, ") exceeds workload.candidates (",
                        w.candidates, ")");
  }
  return "";
}

}  // namespace helm::config
