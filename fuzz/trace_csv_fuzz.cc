// Target trace_csv: a recorded trace as the trace workload reads it.
#include <sstream>
#include <string>

#include "fuzz_targets.h"
#include "helm/workload/trace.h"

namespace helm::fuzz {

int FuzzTraceCsv(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte picks the options (folding or capping item ids), the rest is the file.
  workload::TraceParseOptions options;
  options.num_actions = 1 + (data[0] & 7);
  options.max_items = (data[0] & 0x10) ? 1000 : 0;
  options.fold_items = (data[0] & 0x20) != 0;
  std::istringstream in(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  const absl::StatusOr<std::vector<workload::TraceEvent>> events =
      workload::ParseTrace(in, "<fuzz>", options);
  if (!events.ok()) {
    HELM_FUZZ_CHECK(events.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  // Everything trace.h promises about accepted events.
  HELM_FUZZ_CHECK(!events->empty());
  int64_t last_line = 0;
  for (const workload::TraceEvent& e : *events) {
    HELM_FUZZ_CHECK(e.user_id >= 0 && e.item_id >= 0 && e.timestamp_ms >= 0);
    HELM_FUZZ_CHECK(e.action >= 0 && e.action < options.num_actions);
    if (options.max_items > 0) HELM_FUZZ_CHECK(e.item_id < options.max_items);
    HELM_FUZZ_CHECK(e.line > last_line);
    last_line = e.line;
  }
  return 0;
}

}  // namespace helm::fuzz
