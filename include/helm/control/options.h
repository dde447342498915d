// Options of a node's split controller (DESIGN.md §4): which policy moves the EMB:KV split of the
// pool between statistics windows, and the heuristic's knobs.
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::control {

struct ControlOptions {
  // "static": the split stays at pool.initial_split. "heuristic": hill climbing on the window's
  // P99 (split_controller.h). "oracle": the simulator's offline oracle (helm-sim only: it replays
  // every window from a copy of the cluster at each candidate split). "ppo": the learned base
  // policy of policy_path (policy.h).
  std::string policy = "static";
  // helm-node's control thread runs the controller every interval_ms: the statistics window it
  // decides on (and the window GetStats reports) is this long. The simulator uses the same window.
  int32_t interval_ms = 1000;
  // JSONL file helm-node appends one line to per decision (the controller's LastDecisionJson(), or
  // the window's key figures, with the old and new target). Empty: no audit log.
  std::string audit_log;
  // Heuristic: the first and smallest move, the P99 change that counts as better or worse (a
  // fraction of the reference P99), how many windows a split is held once moves stop helping,
  // and the fewest answers in a window for its P99 to count.
  double step = 0.05;
  double min_step = 0.02;
  double hysteresis = 0.10;
  int32_t hold_windows = 5;
  int64_t min_window_answers = 50;
  // Oracle: the candidate splits r_min, r_min + oracle_step, ..., r_max.
  double oracle_step = 0.05;
  // "ppo": the frozen base policy's file (policy.h), the largest change of the split per window,
  // and the latency SLO its features are normalised by.
  std::string policy_path;
  double max_move = 0.10;
  double slo_ms = 50;

  template <class V>
  void Describe(V& v) {
    v.Field("policy", policy, "split controller",
            config::OneOf({"static", "heuristic", "oracle", "ppo"}));
    v.Field("interval_ms", interval_ms,
            "control interval = statistics window the controller decides on (ms)",
            config::InRange<int32_t>(10, 3600000));
    v.Field("audit_log", audit_log, "JSONL file of every decision, appended (\"\": off)");
    v.Field("step", step, "heuristic: first move of the split", config::InRange(0.001, 0.5));
    v.Field("min_step", min_step, "heuristic: smallest move", config::InRange(0.001, 0.5));
    v.Field("hysteresis", hysteresis, "heuristic: relative P99 change that counts",
            config::InRange(0.0, 1.0));
    v.Field("hold_windows", hold_windows, "heuristic: windows a split is held before probing",
            config::InRange<int32_t>(1, 1000000));
    v.Field("min_window_answers", min_window_answers,
            "heuristic: fewest answers for a window's P99", config::AtLeast<int64_t>(1));
    v.Field("oracle_step", oracle_step, "oracle: spacing of the candidate splits",
            config::InRange(0.01, 0.5));
    v.Field("policy_path", policy_path, "ppo: the base policy file (JSON, helm-policy-v1)");
    v.Field("max_move", max_move, "ppo: largest change of the split per window",
            config::InRange(0.001, 0.5));
    v.Field("slo_ms", slo_ms, "ppo: latency SLO the features are normalised by (ms)",
            config::InRange(0.001, 1e6));
  }
};

}  // namespace helm::control
