#include "helm/workload/trace.h"

#include <fstream>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace helm::workload {
namespace {

constexpr absl::string_view kHeader = "user_id,item_id,action,timestamp_ms";

absl::Status LineError(absl::string_view source, int64_t line, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(source, ":", line, ": ", reason));
}

// Parses one integer field; "" on success, else the reason.
std::string ParseField(absl::string_view text, absl::string_view name, int64_t* out) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return absl::StrCat(name, " is empty");
  if (!absl::SimpleAtoi(text, out)) {
    return absl::StrCat(name, " '", text, "' is not an integer");
  }
  if (*out < 0) return absl::StrCat(name, " ", *out, " is negative");
  return "";
}

}  // namespace

absl::StatusOr<std::vector<TraceEvent>> ParseTrace(std::istream& in, absl::string_view source,
                                                   const TraceParseOptions& options) {
  std::vector<TraceEvent> events;
  std::string raw;
  int64_t line = 0;
  while (std::getline(in, raw)) {
    ++line;
    absl::string_view text = absl::StripAsciiWhitespace(raw);
    if (text.empty()) continue;
    if (line == 1 && absl::StrReplaceAll(text, {{" ", ""}}) == kHeader) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(text, ',');
    if (fields.size() != 4) {
      return LineError(
          source, line,
          absl::StrCat("expected 4 comma-separated fields (", kHeader, "), got ", fields.size()));
    }
    TraceEvent event;
    event.line = line;
    int64_t action = 0;
    for (const auto& [field, name, out] :
         {std::tuple{fields[0], "user_id", &event.user_id},
          std::tuple{fields[1], "item_id", &event.item_id},
          std::tuple{fields[2], "action", &action},
          std::tuple{fields[3], "timestamp_ms", &event.timestamp_ms}}) {
      std::string error = ParseField(field, name, out);
      if (!error.empty()) return LineError(source, line, error);
    }
    if (action >= options.num_actions) {
      return LineError(
          source, line,
          absl::StrCat("action ", action, " is out of range [0, ", options.num_actions, ")"));
    }
    event.action = static_cast<int32_t>(action);
    if (options.max_items > 0 && event.item_id >= options.max_items) {
      if (!options.fold_items) {
        return LineError(
            source, line,
            absl::StrCat("item_id ", event.item_id, " is outside the catalog (max_items ",
                         options.max_items, "; set trace_fold_items to fold ids into it)"));
      }
      event.item_id %= options.max_items;
    }
    events.push_back(event);
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(source, ": read error after line ", line));
  if (events.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": the trace has no events"));
  }
  return events;
}

absl::StatusOr<std::vector<TraceEvent>> ReadTraceFile(const std::string& path,
                                                      const TraceParseOptions& options) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read trace file '", path, "'"));
  return ParseTrace(in, path, options);
}

}  // namespace helm::workload
