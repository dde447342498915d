#include "helm/serve/audit_log.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace helm::serve {
namespace {

using Json = nlohmann::ordered_json;

Json RatioOrNull(int64_t part, int64_t whole) {
  if (whole <= 0) return nullptr;
  return static_cast<double>(part) / static_cast<double>(whole);
}

Json WindowFigures(const StatsWindow& w) {
  Json j;
  j["seconds"] = w.seconds();
  j["arrivals"] = w.requests.arrivals;
  j["answers"] = w.requests.completions;
  j["failures"] = w.requests.failures;
  const bool any = w.latency_us.Count() > 0;
  j["p50_us"] = any ? w.latency_us.Quantile(0.5) : 0.0;
  j["p99_us"] = any ? w.latency_us.Quantile(0.99) : 0.0;
  j["queue_depth"] = w.queue_depth;
  j["committed_split"] = w.committed_split;
  j["pending_migration_bytes"] = w.pending_migration_bytes;
  j["emb_hit_rate"] = RatioOrNull(w.emb.hits, w.emb.hits + w.emb.misses);
  j["kv_hit_ratio"] = RatioOrNull(w.kv.hit_tokens, w.kv.requested_tokens);
  return j;
}

}  // namespace

std::string ControlAuditLine(const std::string& node_id, const std::string& policy, int64_t wall_ms,
                             const ControlDecision& decision, const StatsWindow& window) {
  Json line;
  line["time_ms"] = wall_ms;
  line["node"] = node_id;
  line["policy"] = policy;
  line["mode"] = decision.mode;
  line["old_target"] = decision.old_target;
  line["new_target"] = decision.new_target;
  if (decision.detail_json.empty()) {
    line["window"] = WindowFigures(window);
  } else {
    Json detail = Json::parse(decision.detail_json, nullptr, /*allow_exceptions=*/false);
    if (detail.is_object()) {
      line["decision"] = std::move(detail);
    } else {
      line["decision_text"] = decision.detail_json;
    }
  }
  // Replace, not throw, on invalid UTF-8 in a string (a node id is the operator's text).
  return line.dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<ControlAuditLog>> ControlAuditLog::Open(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("control.audit_log: '", path, "' is a directory, not a file"));
  }
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("control.audit_log: cannot open '", path,
                                                   "' for appending: ", std::strerror(errno)));
  }
  // Fully buffered: a line is written with one write(2) at its flush.
  std::setvbuf(file, nullptr, _IOFBF, 64 << 10);
  return std::unique_ptr<ControlAuditLog>(new ControlAuditLog(path, file));
}

ControlAuditLog::~ControlAuditLog() { std::fclose(file_); }

absl::Status ControlAuditLog::Append(const std::string& line) {
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
      std::fputc('\n', file_) == EOF || std::fflush(file_) != 0) {
    const int error = errno;
    std::clearerr(file_);
    return absl::InternalError(
        absl::StrCat("control.audit_log: writing '", path_, "' failed: ", std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace helm::serve
