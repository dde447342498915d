// Reading a YAML map into a struct described by its Describe (describe.h), every error collected
// with its key path ("pool.chunk_bytes: expected an integer, got 'x'"). The reader of config.h's
// sections, shared with the sections other tools add to a HELM config (helm-train's `train`).
// Include it only where YAML is read: it brings in yaml-cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "helm/config/describe.h"
#include "yaml-cpp/yaml.h"

namespace helm::config {

// An integer with an optional binary size suffix ("2MiB", "64 GiB", "512KiB"), so byte sizes read
// naturally in YAML. False when `text` is not one or it overflows.
bool ParseInteger(std::string text, int64_t* out);

// Levenshtein distance (unknown keys suggest their nearest known key).
size_t EditDistance(const std::string& a, const std::string& b);

inline std::string JoinPath(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

template <typename T>
std::string Show(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    return absl::StrCat("'", v, "'");
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>> ||
                       std::is_same_v<T, std::vector<double>>) {
    return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
  } else {
    return absl::StrCat(v);
  }
}

// Parses one scalar (or a sequence of strings or of numbers) into `out`; returns "" or what was
// expected.
template <typename T>
std::string ParseValue(const YAML::Node& node, T* out) {
  if constexpr (std::is_same_v<T, std::vector<double>>) {
    if (!node.IsSequence()) return "expected a list of numbers";
    std::vector<double> values;
    for (const auto& item : node) {
      double d = 0;
      if (!item.IsScalar() || !absl::SimpleAtod(item.Scalar(), &d) || !std::isfinite(d)) {
        return "expected a list of numbers";
      }
      values.push_back(d);
    }
    *out = std::move(values);
    return "";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (!node.IsSequence()) return "expected a list of strings";
    std::vector<std::string> values;
    for (const auto& item : node) {
      if (!item.IsScalar()) return "expected a list of strings";
      values.push_back(item.Scalar());
    }
    *out = std::move(values);
    return "";
  } else {
    if (!node.IsScalar()) return "expected a single value, got a map or list";
    const std::string& text = node.Scalar();
    if constexpr (std::is_same_v<T, std::string>) {
      *out = text;
    } else if constexpr (std::is_same_v<T, bool>) {
      std::string t = absl::AsciiStrToLower(text);
      if (t == "true" || t == "yes" || t == "on") {
        *out = true;
      } else if (t == "false" || t == "no" || t == "off") {
        *out = false;
      } else {
        return absl::StrCat("expected true or false, got '", text, "'");
      }
    } else if constexpr (std::is_floating_point_v<T>) {
      double d = 0;
      if (!absl::SimpleAtod(text, &d) || !std::isfinite(d)) {
        return absl::StrCat("expected a number, got '", text, "'");
      }
      *out = static_cast<T>(d);
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      uint64_t u = 0;
      if (!absl::SimpleAtoi(text, &u)) {
        return absl::StrCat("expected a non-negative integer, got '", text, "'");
      }
      *out = u;
    } else {
      static_assert(std::is_integral_v<T>, "unsupported option type");
      int64_t i = 0;
      if (!ParseInteger(text, &i)) return absl::StrCat("expected an integer, got '", text, "'");
      if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max()) {
        return absl::StrCat("expected an integer in [", std::numeric_limits<T>::min(), ", ",
                            std::numeric_limits<T>::max(), "], got ", i);
      }
      *out = static_cast<T>(i);
    }
    return "";
  }
}

// Visitor that reads a YAML map into a described struct, collecting every error with its path.
class Reader {
 public:
  Reader(YAML::Node node, std::string path, std::vector<std::string>* errors)
      : node_(std::move(node)), path_(std::move(path)), errors_(errors) {}

  template <typename T>
  void Field(const char* key, T& field, const char* /*doc*/, Check<T> check = {}) {
    known_.insert(key);
    const std::string path = JoinPath(path_, key);
    if (node_.IsMap() && node_[key]) {
      std::string error = ParseValue(node_[key], &field);
      if (!error.empty()) {
        errors_->push_back(absl::StrCat(path, ": ", error));
        return;
      }
    }
    if (check) {
      std::string error = check(field);
      if (!error.empty())
        errors_->push_back(absl::StrCat(path, ": ", error, ", got ", Show(field)));
    }
  }

  template <typename S>
  void Section(const char* key, S& section, const char* /*doc*/) {
    known_.insert(key);
    const std::string path = JoinPath(path_, key);
    YAML::Node child;
    if (node_.IsMap() && node_[key]) child = node_[key];
    if (child && !child.IsNull() && !child.IsMap()) {
      errors_->push_back(absl::StrCat(path, ": expected a map of options"));
      return;
    }
    ReadStruct(child, path, section, errors_);
  }

  template <typename S>
  static void ReadStruct(const YAML::Node& node, const std::string& path, S& s,
                         std::vector<std::string>* errors) {
    Reader reader(node, path, errors);
    const size_t before = errors->size();
    s.Describe(reader);
    reader.CheckUnknownKeys();
    if constexpr (requires { s.Validate(); }) {
      if (errors->size() == before) {
        absl::Status status = s.Validate();
        if (!status.ok()) {
          errors->push_back(path.empty() ? std::string(status.message())
                                         : absl::StrCat(path, ".", status.message()));
        }
      }
    }
  }

 private:
  // An error for every key of the map that Describe did not name, suggesting a near miss.
  void CheckUnknownKeys();

  YAML::Node node_;
  std::string path_;
  std::vector<std::string>* errors_;
  std::set<std::string> known_;
};

}  // namespace helm::config
