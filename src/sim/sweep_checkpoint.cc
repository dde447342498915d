// The sweep's checkpoints: a finished cell to JSON and back, and the fingerprint of the config it
// came from (sim/sweep.h "Checkpoints").

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "helm/config/config.h"
#include "helm/sim/sweep.h"
#include "nlohmann/json.hpp"
#include "sweep_json.h"

namespace helm::sim {
namespace {

constexpr char kFormat[] = "helm-sweep-cell-v1";

uint64_t Fnv1a64(const std::string& text) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

namespace internal {

nlohmann::ordered_json SweepRunJson(const SweepRun& r) {
  return {{"controller", r.controller},
          {"split", r.split},
          {"p99_ms", r.p99_ms},
          {"p50_ms", r.p50_ms},
          {"slo_attainment", r.slo_attainment},
          {"throughput_per_s", r.throughput_per_s},
          {"goodput_per_s", r.goodput_per_s},
          {"kv_token_hit", r.kv_token_hit},
          {"emb_hit", r.emb_hit},
          {"tracking_error", r.tracking_error},
          {"reversals", r.reversals}};
}

}  // namespace internal

std::string CellFingerprint(const config::Config& cell_config) {
  config::Config c = cell_config;
  c.simulator.sweep_profiles.clear();
  c.simulator.sweep_regimes.clear();
  c.simulator.sweep_scales.clear();
  c.simulator.sweep_threads = 1;
  c.log = config::LogOptions();
  return absl::StrFormat("%016x", Fnv1a64(config::ConfigToYaml(c)));
}

std::string SweepCellJson(const SweepCell& cell, const std::string& fingerprint,
                          const std::string& revision) {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["fingerprint"] = fingerprint;
  j["revision"] = revision;
  j["profile"] = cell.profile;
  j["regime"] = cell.regime;
  j["scale"] = cell.scale;
  j["pool_bytes"] = cell.pool_bytes;
  j["emb_footprint_bytes"] = cell.emb_footprint_bytes;
  j["kv_working_set_bytes"] = cell.kv_working_set_bytes;
  j["rate_per_s"] = cell.rate_per_s;
  j["capacity_per_s"] = cell.capacity_per_s;
  nlohmann::ordered_json runs = nlohmann::ordered_json::array();
  for (const SweepRun& r : cell.runs) runs.push_back(internal::SweepRunJson(r));
  j["runs"] = std::move(runs);
  return j.dump(1);
}

absl::StatusOr<SavedSweepCell> ParseSweepCell(const std::string& json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("sweep cell: not a JSON object");
  }
  const auto format = j.find("format");
  if (format == j.end() || !format->is_string() || format->get<std::string>() != kFormat) {
    return absl::InvalidArgumentError(absl::StrCat("sweep cell: format is not ", kFormat));
  }
  // Every key must be there with its type: a cell missing a figure would print as a zero.
  std::string missing;
  auto number = [&](const nlohmann::json& o, const char* key, auto* out) {
    const auto it = o.find(key);
    if (it == o.end() || !it->is_number()) {
      if (missing.empty()) missing = key;
      return;
    }
    *out = it->get<std::remove_pointer_t<decltype(out)>>();
  };
  auto text = [&](const nlohmann::json& o, const char* key, std::string* out) {
    const auto it = o.find(key);
    if (it == o.end() || !it->is_string()) {
      if (missing.empty()) missing = key;
      return;
    }
    *out = it->get<std::string>();
  };
  SavedSweepCell saved;
  SweepCell& cell = saved.cell;
  text(j, "fingerprint", &saved.fingerprint);
  text(j, "revision", &saved.revision);
  text(j, "profile", &cell.profile);
  text(j, "regime", &cell.regime);
  number(j, "scale", &cell.scale);
  number(j, "pool_bytes", &cell.pool_bytes);
  number(j, "emb_footprint_bytes", &cell.emb_footprint_bytes);
  number(j, "kv_working_set_bytes", &cell.kv_working_set_bytes);
  number(j, "rate_per_s", &cell.rate_per_s);
  number(j, "capacity_per_s", &cell.capacity_per_s);
  const auto runs = j.find("runs");
  if (runs == j.end() || !runs->is_array()) {
    if (missing.empty()) missing = "runs";
  } else {
    for (const nlohmann::json& o : *runs) {
      if (!o.is_object()) {
        if (missing.empty()) missing = "runs[]";
        break;
      }
      SweepRun& r = cell.runs.emplace_back();
      text(o, "controller", &r.controller);
      number(o, "split", &r.split);
      number(o, "p99_ms", &r.p99_ms);
      number(o, "p50_ms", &r.p50_ms);
      number(o, "slo_attainment", &r.slo_attainment);
      number(o, "throughput_per_s", &r.throughput_per_s);
      number(o, "goodput_per_s", &r.goodput_per_s);
      number(o, "kv_token_hit", &r.kv_token_hit);
      number(o, "emb_hit", &r.emb_hit);
      number(o, "tracking_error", &r.tracking_error);
      number(o, "reversals", &r.reversals);
    }
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sweep cell: '", missing, "' is missing"));
  }
  return saved;
}

}  // namespace helm::sim
