#include "helm/serve/audit_log.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace helm::serve {
namespace {

using Json = nlohmann::json;

ControlDecision Decided(double old_target, double new_target, std::string detail = "") {
  ControlDecision d;
  d.decided = true;
  d.time_us = 5'000'000;
  d.old_target = old_target;
  d.new_target = new_target;
  d.mode = "heuristic";
  d.detail_json = std::move(detail);
  return d;
}

StatsWindow Window() {
  StatsWindow w;
  w.start_us = 1'000'000;
  w.end_us = 2'000'000;
  w.requests.arrivals = 120;
  w.requests.completions = 100;
  w.requests.failures = 3;
  w.latency_us.RecordN(20'000, 99);
  w.latency_us.RecordN(90'000, 1);
  w.queue_depth = 4;
  w.committed_split = 0.45;
  w.pending_migration_bytes = 1 << 20;
  w.emb.hits = 30;
  w.emb.misses = 10;
  w.kv.requested_tokens = 1000;
  w.kv.hit_tokens = 250;
  return w;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("helm-audit-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

TEST(ControlAuditLine, CarriesTheDecisionRecordAsAnObject) {
  const std::string text = ControlAuditLine("node-3", "helm", 1700000000123,
                                            Decided(0.5, 0.55, R"({"action":0.05})"), Window());
  EXPECT_EQ(text.find('\n'), std::string::npos);
  const Json line = Json::parse(text);
  EXPECT_EQ(line["time_ms"].get<int64_t>(), 1700000000123);
  EXPECT_EQ(line["node"], "node-3");
  EXPECT_EQ(line["policy"], "helm");
  EXPECT_EQ(line["mode"], "heuristic");
  EXPECT_DOUBLE_EQ(line["old_target"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(line["new_target"].get<double>(), 0.55);
  EXPECT_DOUBLE_EQ(line["decision"]["action"].get<double>(), 0.05);
  EXPECT_FALSE(line.contains("window"));
}

TEST(ControlAuditLine, WithoutADecisionRecordCarriesTheWindowsKeyFigures) {
  const Json line =
      Json::parse(ControlAuditLine("node-0", "heuristic", 1, Decided(0.5, 0.45), Window()));
  ASSERT_TRUE(line.contains("window"));
  EXPECT_FALSE(line.contains("decision"));
  const Json& w = line["window"];
  EXPECT_DOUBLE_EQ(w["seconds"].get<double>(), 1.0);
  EXPECT_EQ(w["arrivals"].get<int64_t>(), 120);
  EXPECT_EQ(w["answers"].get<int64_t>(), 100);
  EXPECT_EQ(w["failures"].get<int64_t>(), 3);
  EXPECT_NEAR(w["p50_us"].get<double>(), 20'000, 20'000 * 0.05);
  EXPECT_NEAR(w["p99_us"].get<double>(), 20'000, 20'000 * 0.05);
  EXPECT_EQ(w["queue_depth"].get<int64_t>(), 4);
  EXPECT_DOUBLE_EQ(w["committed_split"].get<double>(), 0.45);
  EXPECT_EQ(w["pending_migration_bytes"].get<int64_t>(), 1 << 20);
  EXPECT_DOUBLE_EQ(w["emb_hit_rate"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(w["kv_hit_ratio"].get<double>(), 0.25);
}

TEST(ControlAuditLine, AnEmptyWindowHasNullHitRates) {
  const Json line =
      Json::parse(ControlAuditLine("node-0", "heuristic", 1, Decided(0.5, 0.5), StatsWindow()));
  EXPECT_TRUE(line["window"]["emb_hit_rate"].is_null());
  EXPECT_TRUE(line["window"]["kv_hit_ratio"].is_null());
  EXPECT_EQ(line["window"]["p99_us"].get<double>(), 0.0);
}

TEST(ControlAuditLine, ARecordThatIsNotAJsonObjectStaysValidJsonAsText) {
  for (const std::string detail : {"not json {", "[1, 2]", "\"a\nb\""}) {
    const Json line =
        Json::parse(ControlAuditLine("node \"q\"", "ppo", 1, Decided(0.5, 0.5, detail), Window()),
                    nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(line.is_object()) << detail;
    EXPECT_EQ(line["decision_text"], detail);
    EXPECT_EQ(line["node"], "node \"q\"");
  }
}

TEST(ControlAuditLog, AppendsOneLinePerCallAndKeepsEarlierLines) {
  const std::string path = TempPath("append.jsonl");
  std::filesystem::remove(path);
  { std::ofstream(path) << "{\"earlier\":1}\n"; }
  {
    auto log = ControlAuditLog::Open(path);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->Append("{\"a\":1}").ok());
    // Flushed at once: readable while the log is open.
    std::ifstream in(path);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content, "{\"earlier\":1}\n{\"a\":1}\n");
    ASSERT_TRUE((*log)->Append("{\"b\":2}").ok());
  }
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "{\"earlier\":1}\n{\"a\":1}\n{\"b\":2}\n");
  std::filesystem::remove(path);
}

TEST(ControlAuditLog, APathThatCannotBeOpenedIsAnErrorNamingTheKey) {
  for (const std::string& path : {std::string("/nonexistent-helm-dir/audit.jsonl"),
                                  std::filesystem::temp_directory_path().string()}) {
    auto log = ControlAuditLog::Open(path);
    ASSERT_FALSE(log.ok()) << path;
    EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(log.status().message().find("control.audit_log"), std::string::npos) << log.status();
    EXPECT_NE(log.status().message().find(path), std::string::npos) << log.status();
  }
}

}  // namespace
}  // namespace helm::serve
