// Phases of a workload run: a run is a sequence of regimes, each with its own duration
// ("steady:20,trend:30,burst:20"). Header-only so that the options struct can validate the
// `workload.phases` key without linking the workload library. Value types; thread-compatible.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace helm::workload {

enum class Regime { kSteady, kTrend, kBurst, kTrace };

// "steady", "trend", "burst", "trace".
inline const char* RegimeName(Regime regime) {
  switch (regime) {
    case Regime::kSteady:
      return "steady";
    case Regime::kTrend:
      return "trend";
    case Regime::kBurst:
      return "burst";
    case Regime::kTrace:
      return "trace";
  }
  return "?";
}

// InvalidArgument naming the accepted names when `name` is not a synthetic regime.
inline absl::StatusOr<Regime> ParseRegime(absl::string_view name) {
  if (name == "steady") return Regime::kSteady;
  if (name == "trend") return Regime::kTrend;
  if (name == "burst") return Regime::kBurst;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown regime '", name, "' (known: steady, trend, burst)"));
}

struct Phase {
  Regime regime = Regime::kSteady;
  int64_t start_us = 0;     // from the start of the run
  int64_t duration_us = 0;  // > 0
  std::string name;         // e.g. "steady", or "burst#2" when a regime repeats

  int64_t end_us() const { return start_us + duration_us; }
};

// Parses "regime:seconds[,regime:seconds...]" (whitespace ignored). An empty spec gives one phase
// of `default_regime` lasting `default_duration_s`. Errors name the offending entry.
inline absl::StatusOr<std::vector<Phase>> ParsePhases(absl::string_view spec,
                                                      absl::string_view default_regime,
                                                      double default_duration_s) {
  std::vector<Phase> phases;
  auto add = [&phases](Regime regime, double seconds) {
    Phase phase;
    phase.regime = regime;
    phase.start_us = phases.empty() ? 0 : phases.back().end_us();
    phase.duration_us = static_cast<int64_t>(std::llround(seconds * 1e6));
    int same = 0;
    for (const Phase& p : phases) same += p.regime == regime ? 1 : 0;
    phase.name = same == 0 ? RegimeName(regime) : absl::StrCat(RegimeName(regime), "#", same + 1);
    phases.push_back(std::move(phase));
  };
  const std::string trimmed(absl::StripAsciiWhitespace(spec));
  if (trimmed.empty()) {
    absl::StatusOr<Regime> regime = ParseRegime(default_regime);
    if (!regime.ok()) return regime.status();
    if (!(default_duration_s > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("duration must be > 0 s, got ", default_duration_s));
    }
    add(*regime, default_duration_s);
    return phases;
  }
  for (absl::string_view entry : absl::StrSplit(trimmed, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    std::vector<absl::string_view> parts = absl::StrSplit(entry, ':');
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("phase '", entry, "': expected regime:seconds, e.g. steady:20"));
    }
    absl::StatusOr<Regime> regime = ParseRegime(absl::StripAsciiWhitespace(parts[0]));
    if (!regime.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("phase '", entry, "': ", regime.status().message()));
    }
    double seconds = 0;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(parts[1]), &seconds) || !(seconds > 0) ||
        seconds > 1e7) {
      return absl::InvalidArgumentError(
          absl::StrCat("phase '", entry, "': duration must be a number of seconds in (0, 1e7]"));
    }
    add(*regime, seconds);
  }
  return phases;
}

}  // namespace helm::workload
