// Options of a node's split controller (DESIGN.md §4): which policy moves the EMB:KV split of the
// pool between statistics windows, and the heuristic's knobs.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "helm/config/describe.h"

namespace helm::control {

struct ControlOptions {
  // "static": the split stays at pool.initial_split. "heuristic": hill climbing on the window's
  // P99 (split_controller.h). "marginal": toward the cache whose ghost list says growing it saves
  // more time (split_controller.h). "oracle": the simulator's offline oracle (helm-sim only: it
  // replays every window from a copy of the cluster at each candidate split). "helm": the learned
  // controller (helm_controller.h): the base policy of policy_path (policy.h), then the residual
  // adapter (adapter.h) if `adapter`, then burst-aware recovery (recovery.h) if `recovery`, then
  // the safety rules (safety.h). With adapter and recovery off it is the base policy alone.
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
  // Marginal (split_controller.h): the smallest difference of the two caches' growth gains, as a
  // share of the window, worth a move (hysteresis and hold_windows as above; a move is `step`
  // where one gain is 3x the other, in proportion otherwise).
  double marginal_min_gain = 0.002;
  // Predictive (predict.h): how many miniature KV caches (kv/kv_shadow.h) run beside the node's,
  // at splits spread evenly over [r_min, r_max], to read each answer's reuse at other KV sizes (0,
  // or 2 to 16); 0: read it off the users' reuse times (AET) instead.
  int32_t kv_shadows = 10;
  // Predictive: how many miniature EMB caches (emb/emb_shadow.h) run beside the node's, at the
  // same splits, to read the EMB miss ratio at other sizes (0, or 2 to 16; 0: read it off the
  // ids' reuse times, LRU's curve, instead), and the rows of the largest one: they run on a hashed
  // sample of the ids at the rate that makes the cache at r_max this many rows (every id when the
  // cache is smaller).
  int32_t emb_shadows = 10;
  int64_t emb_shadow_rows = int64_t{1} << 15;
  // Oracle: the candidate splits r_min, r_min + oracle_step, ..., r_max.
  double oracle_step = 0.05;
  // "helm": the frozen base policy's file (policy.h), the largest change of the split per window,
  // and the latency SLO its features and its reward are normalised by.
  std::string policy_path;
  double max_move = 0.10;
  double slo_ms = 50;
  // "helm", Layer 2 (adapter.h): the online residual adapter, a bounded correction of the base's
  // split change learned by perturb-and-observe. adapter_bound caps the correction (probe
  // included); adapter_probe is the size of an exploratory offset; adapter_step is how far one
  // probe's reward gain (reward units, clipped to [-1, 1]) moves the correction; each nominal and
  // probe block lasts adapter_block_windows windows (more than hold_windows, so a probe can turn
  // the split round). With adapter_reset_on_shift, the correction goes back to 0 when recovery
  // sees the requests' shape change (a change of mix, burst_shape_margin): it was learned on the
  // old mix.
  bool adapter = true;
  double adapter_step = 0.05;
  double adapter_bound = 0.05;
  double adapter_probe = 0.02;
  int32_t adapter_block_windows = 8;
  bool adapter_reset_on_shift = true;
  // "helm", Layer 3 (recovery.h): burst-aware recovery. A burst: the mean arrival rate over
  // burst_short_windows windows is burst_ratio times that over burst_long_windows (Knative's panic
  // mode: 2x over a window 1/10 as long), or a CUSUM on the arrival rate or on log P99 passes
  // cusum_h (slack cusum_k; both in standard deviations, estimated online after
  // cusum_warmup_windows windows) with the ratio at (1 + burst_ratio) / 2. During one the split
  // moves by at most burst_max_move per window (0: frozen); it ends after burst_cooldown_windows
  // calm windows (or burst_long_windows at most). A rise whose requests look different (EMB
  // lookups or history tokens per request over the short window off their long-window mean by
  // more than burst_shape_margin, a fraction) is a change of mix, not a burst: no freeze. A move
  // after which P99 stays above the last stable split's P99 by more than rollback_margin (a
  // fraction) and does not fall, the load staying within that margin, for rollback_windows settled
  // windows is undone: back to the last stable split. With rollback_model_veto and a base policy
  // that reads the predictive model (v3, v4), a rollback is not made when the model, which sees
  // the load and the mix, predicts the split it would return to no better than the current one:
  // the P99 rose for another reason. The move is kept as the new stable split.
  bool recovery = true;
  double burst_ratio = 2.0;
  int32_t burst_short_windows = 3;
  int32_t burst_long_windows = 30;
  double cusum_k = 0.5;
  double cusum_h = 5.0;
  int32_t cusum_warmup_windows = 10;
  double burst_max_move = 0.0;
  int32_t burst_cooldown_windows = 5;
  double burst_shape_margin = 0.25;
  int32_t rollback_windows = 3;
  double rollback_margin = 0.10;
  bool rollback_model_veto = true;

  template <class V>
  void Describe(V& v) {
    v.Field("policy", policy, "split controller",
            config::OneOf({"static", "heuristic", "marginal", "predictive", "oracle", "helm"}));
    v.Field("interval_ms", interval_ms,
            "control interval = statistics window the controller decides on (ms)",
            config::InRange<int32_t>(10, 3600000));
    v.Field("audit_log", audit_log, "JSONL file of every decision, appended (\"\": off)");
    v.Field("step", step,
            "heuristic: first move of the split; marginal: the move where one gain is 3x the other",
            config::InRange(0.001, 0.5));
    v.Field("min_step", min_step,
            "heuristic: smallest move; predictive: spacing of the splits it predicts",
            config::InRange(0.001, 0.5));
    v.Field("hysteresis", hysteresis, "heuristic, predictive: relative P99 change that counts",
            config::InRange(0.0, 1.0));
    v.Field("hold_windows", hold_windows, "heuristic: windows a split is held before probing",
            config::InRange<int32_t>(1, 1000000));
    v.Field("min_window_answers", min_window_answers,
            "heuristic: fewest answers for a window's P99", config::AtLeast<int64_t>(1));
    v.Field("marginal_min_gain", marginal_min_gain,
            "marginal: smallest gain difference worth a move (share of the window)",
            config::InRange(0.0, 1.0));
    v.Field("kv_shadows", kv_shadows,
            "predictive: miniature KV caches at splits over [r_min, r_max] (0: reuse times)",
            config::InRange<int32_t>(0, 16));
    v.Field("emb_shadows", emb_shadows,
            "predictive: miniature EMB caches at splits over [r_min, r_max] (0: reuse times)",
            config::InRange<int32_t>(0, 16));
    v.Field("emb_shadow_rows", emb_shadow_rows,
            "predictive: rows of the largest miniature EMB cache (sets its id sampling rate)",
            config::InRange<int64_t>(1024, int64_t{1} << 26));
    v.Field("oracle_step", oracle_step, "oracle: spacing of the candidate splits",
            config::InRange(0.01, 0.5));
    v.Field("policy_path", policy_path,
            "helm: the base policy file (JSON, helm-policy-v1) or builtin:helm-base-v1 / -v2");
    v.Field("max_move", max_move,
            "helm, marginal, predictive: largest change of the split per window",
            config::InRange(0.001, 0.5));
    v.Field("slo_ms", slo_ms, "helm: latency SLO the features and reward are normalised by (ms)",
            config::InRange(0.001, 1e6));
    v.Field("adapter", adapter, "helm: the online residual adapter (Layer 2) on");
    v.Field("adapter_step", adapter_step,
            "adapter: correction change per unit of a probe's reward gain (0: frozen)",
            config::InRange(0.0, 0.5));
    v.Field("adapter_bound", adapter_bound, "adapter: trust bound on |correction| (split units)",
            config::InRange(0.0, 0.5));
    v.Field("adapter_probe", adapter_probe, "adapter: exploratory offset of a probe block",
            config::InRange(0.001, 0.5));
    v.Field("adapter_block_windows", adapter_block_windows,
            "adapter: windows per nominal or probe block", config::InRange<int32_t>(2, 10000));
    v.Field("adapter_reset_on_shift", adapter_reset_on_shift,
            "adapter: the correction back to 0 when recovery sees a change of mix");
    v.Field("recovery", recovery, "helm: burst-aware recovery (Layer 3) on");
    v.Field("burst_ratio", burst_ratio, "recovery: short/long arrival-rate ratio of a burst",
            config::InRange(1.01, 100.0));
    v.Field("burst_short_windows", burst_short_windows,
            "recovery: windows of the short arrival-rate mean", config::InRange<int32_t>(1, 10000));
    v.Field("burst_long_windows", burst_long_windows,
            "recovery: windows of the long arrival-rate mean", config::InRange<int32_t>(2, 10000));
    v.Field("cusum_k", cusum_k, "recovery: CUSUM slack (standard deviations)",
            config::InRange(0.0, 10.0));
    v.Field("cusum_h", cusum_h, "recovery: CUSUM threshold (standard deviations)",
            config::InRange(0.1, 100.0));
    v.Field("cusum_warmup_windows", cusum_warmup_windows,
            "recovery: windows observed before any burst is declared",
            config::InRange<int32_t>(2, 10000));
    v.Field("burst_max_move", burst_max_move,
            "recovery: largest change of the split per window during a burst (0: frozen)",
            config::InRange(0.0, 0.5));
    v.Field("burst_cooldown_windows", burst_cooldown_windows,
            "recovery: calm windows that end a burst", config::InRange<int32_t>(1, 10000));
    v.Field("burst_shape_margin", burst_shape_margin,
            "recovery: change of the requests' shape that makes a rise a change of mix, not a "
            "burst (a fraction; 0: never)",
            config::InRange(0.0, 100.0));
    v.Field("rollback_windows", rollback_windows,
            "recovery: settled windows of rising P99 after a move that undo it",
            config::InRange<int32_t>(1, 10000));
    v.Field("rollback_margin", rollback_margin,
            "recovery: P99 rise over the stable split's that counts (fraction)",
            config::InRange(0.0, 10.0));
    v.Field("rollback_model_veto", rollback_model_veto,
            "recovery: no rollback where the predictive model prefers the current split");
  }

  // Checks across fields; errors name the key (the config reader prefixes "control.").
  absl::Status Validate() const {
    if (burst_short_windows >= burst_long_windows) {
      return absl::InvalidArgumentError(
          absl::StrCat("burst_short_windows: must be < burst_long_windows (", burst_long_windows,
                       "), got ", burst_short_windows));
    }
    if (adapter_probe > adapter_bound && adapter && adapter_step > 0) {
      return absl::InvalidArgumentError(absl::StrCat("adapter_probe: must be <= adapter_bound (",
                                                     adapter_bound, "), got ", adapter_probe));
    }
    for (const auto& [key, count] :
         {std::pair{"kv_shadows", kv_shadows}, std::pair{"emb_shadows", emb_shadows}}) {
      if (count == 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            key, ": must be 0 (none) or at least 2 (one at r_min and one at r_max), got 1"));
      }
    }
    return absl::OkStatus();
  }
};

}  // namespace helm::control
