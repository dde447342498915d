// The node's control audit log (control.audit_log): one JSON object per line (JSONL) for every
// decision of the split controller, so that an operator can replay why the split moved.
//
// A line (keys in this order; numbers as JSON numbers):
//   {"time_ms": <wall-clock ms since the Unix epoch>, "node": "<node.id>", "policy": "<policy>",
//    "mode": "<the controller's mode()>", "old_target": <split>, "new_target": <split>,
//    "decision": <the controller's LastDecisionJson(), an object>}
// or, when the controller keeps no decision record (LastDecisionJson() is empty), instead of
// "decision" the window's key figures:
//    "window": {"seconds", "arrivals", "answers", "failures", "p50_us", "p99_us", "queue_depth",
//               "committed_split", "pending_migration_bytes", "emb_hit_rate", "kv_hit_ratio"}
// (hit rates are null without lookups). A LastDecisionJson() that is not a JSON object is kept
// as a string under "decision_text" instead of "decision", so every line stays valid JSON.
//
// Cost: one formatted line and one buffered write plus flush per decision (once per
// control.interval_ms); nothing on the request path.
//
// Thread-safety: ControlAuditLog is thread-compatible (the control loop writes it);
// ControlAuditLine is a pure function.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "helm/serve/node_core.h"
#include "helm/serve/stats_window.h"

namespace helm::serve {

// The audit line of one decision, without the trailing newline. REQUIRES: decision.decided.
std::string ControlAuditLine(const std::string& node_id, const std::string& policy, int64_t wall_ms,
                             const ControlDecision& decision, const StatsWindow& window);

class ControlAuditLog {
 public:
  // Opens `path` for appending (created when absent). InvalidArgument naming control.audit_log
  // and the reason when it cannot be opened (a missing directory, no permission, a directory).
  static absl::StatusOr<std::unique_ptr<ControlAuditLog>> Open(const std::string& path);
  ~ControlAuditLog();

  // Appends `line` and a newline, and flushes. Internal naming the path when the write fails.
  absl::Status Append(const std::string& line);
  const std::string& path() const { return path_; }

 private:
  ControlAuditLog(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}

  std::string path_;
  std::FILE* file_;
};

}  // namespace helm::serve
