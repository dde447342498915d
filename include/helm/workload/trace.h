// Trace files: recorded user events to replay as a workload (profile "trace").
//
// Format: CSV, one event per line, `user_id,item_id,action,timestamp_ms` (integers; ids >= 0,
// action in [0, num_actions), timestamp in ms >= 0). An optional header line
// `user_id,item_id,action,timestamp_ms` may come first; blank lines are skipped; surrounding
// spaces and a trailing '\r' are ignored. Any other malformed line is an InvalidArgument error
// naming the source, the line number (1-based) and the reason.
//
// How events become requests is the generator's business (generator.h, WorkloadOptions::trace_*).
// Thread-safety: free functions over caller-owned values.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace helm::workload {

struct TraceEvent {
  int64_t user_id = 0;
  int64_t item_id = 0;
  int32_t action = 0;
  int64_t timestamp_ms = 0;
  int64_t line = 0;  // 1-based line number in the source
};

struct TraceParseOptions {
  int32_t num_actions = 8;  // actions must be in [0, num_actions)
  // Item ids must be < max_items (0: no cap), or are folded modulo max_items when fold_items.
  int64_t max_items = 0;
  bool fold_items = false;
};

// Parses a whole trace from `in`; `source` names it in errors (e.g. the path). The events come
// back in file order. InvalidArgument on the first malformed line or when there is no event.
absl::StatusOr<std::vector<TraceEvent>> ParseTrace(std::istream& in, absl::string_view source,
                                                   const TraceParseOptions& options);

// Reads and parses the file at `path`; NotFound when it cannot be opened.
absl::StatusOr<std::vector<TraceEvent>> ReadTraceFile(const std::string& path,
                                                      const TraceParseOptions& options);

}  // namespace helm::workload
