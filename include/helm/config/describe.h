// Self-describing options structs.
//
// Every component's options struct lists its fields once, in a `Describe` member template:
//
//   struct PoolOptions {
//     int64_t chunk_bytes = 2 << 20;
//     template <class V> void Describe(V& v) {
//       v.Field("chunk_bytes", chunk_bytes, "chunk size (bytes)", config::PowerOfTwoAtLeast(64 << 10));
//     }
//     absl::Status Validate() const;  // optional: checks that span several fields
//   };
//
// and one description drives YAML parsing (unknown keys, types and ranges are errors naming the
// key path), --print-config and validation (src/config). This header is dependency-light so that
// every component can describe its options without pulling in yaml-cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace helm::config {

// A check returns "" when the value is acceptable, else what is wrong ("must be in [0, 1]").
template <typename T>
using Check = std::function<std::string(const T&)>;

template <typename T>
Check<T> InRange(T lo, T hi) {
  return [lo, hi](const T& v) {
    return (v >= lo && v <= hi) ? std::string() : absl::StrCat("must be in [", lo, ", ", hi, "]");
  };
}

template <typename T>
Check<T> AtLeast(T lo) {
  return [lo](const T& v) { return v >= lo ? std::string() : absl::StrCat("must be >= ", lo); };
}

inline Check<int64_t> PowerOfTwoAtLeast(int64_t lo) {
  return [lo](const int64_t& v) {
    return (v >= lo && (v & (v - 1)) == 0)
               ? std::string()
               : absl::StrCat("must be a power of two >= ", lo);
  };
}

inline Check<std::string> OneOf(std::vector<std::string> allowed) {
  return [allowed = std::move(allowed)](const std::string& v) {
    for (const auto& a : allowed) {
      if (v == a) return std::string();
    }
    return absl::StrCat("must be one of {", absl::StrJoin(allowed, ", "), "}");
  };
}

inline Check<std::string> NotEmpty() {
  return [](const std::string& v) { return v.empty() ? std::string("must not be empty") : ""; };
}

}  // namespace helm::config
