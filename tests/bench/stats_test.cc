#include "bench/stats.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/report.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace helm::bench {
namespace {

constexpr int32_t kOk = 0;
constexpr int32_t kDeadlineExceeded = 4;
constexpr int32_t kUnavailable = 14;

TEST(BenchStats, NearestRankPercentiles) {
  std::vector<int64_t> values;
  for (int64_t v = 100; v >= 1; --v) values.push_back(v * 1000);  // unsorted on purpose
  const LatencyPercentiles p = Percentiles(values);
  EXPECT_EQ(p.count, 100);
  EXPECT_EQ(p.p50_us, 50'000);
  EXPECT_EQ(p.p90_us, 90'000);
  EXPECT_EQ(p.p99_us, 99'000);
  EXPECT_EQ(p.p999_us, 100'000);
  EXPECT_EQ(p.max_us, 100'000);
  EXPECT_DOUBLE_EQ(p.mean_us, 50'500.0);

  std::vector<int64_t> one = {7};
  EXPECT_EQ(Percentiles(one).p50_us, 7);
  EXPECT_EQ(Percentiles(one).p999_us, 7);
  std::vector<int64_t> none;
  EXPECT_EQ(Percentiles(none).count, 0);
  EXPECT_EQ(Percentiles(none).p99_us, 0);
  // 1000 values 1..1000: P99.9 is the 999th.
  std::vector<int64_t> thousand;
  for (int64_t v = 1; v <= 1000; ++v) thousand.push_back(v);
  EXPECT_EQ(Percentiles(thousand).p999_us, 999);
  EXPECT_EQ(Percentiles(thousand).p99_us, 990);
}

NodeSample Sample(int64_t t_us, int32_t target, const std::string& id, double split, int64_t kv_hit,
                  int64_t kv_req, int64_t emb_hits, int64_t emb_misses) {
  NodeSample s;
  s.t_us = t_us;
  s.target = target;
  s.ok = true;
  s.stats.set_node_id(id);
  s.stats.set_committed_split(split);
  s.stats.mutable_total()->set_kv_hit_tokens(kv_hit);
  s.stats.mutable_total()->set_kv_requested_tokens(kv_req);
  s.stats.mutable_total()->set_emb_hits(emb_hits);
  s.stats.mutable_total()->set_emb_misses(emb_misses);
  return s;
}

// 10 s, two phases of 5 s; 1000 OK requests with latencies 1..1000 ms, 10 dropped, 10
// DEADLINE_EXCEEDED, 5 UNAVAILABLE; replies alternate between two nodes.
RunResult MakeRun() {
  RunResult run;
  workload::Phase a;
  a.name = "steady";
  a.start_us = 0;
  a.duration_us = 5'000'000;
  workload::Phase b = a;
  b.name = "burst";
  b.regime = workload::Regime::kBurst;
  b.start_us = 5'000'000;
  run.phases = {a, b};
  run.duration_us = 10'000'000;
  run.node_ids = {"node-a", "node-b"};
  for (int64_t i = 0; i < 1000; ++i) {
    Completion c;
    c.scheduled_us = i * 10'000;  // 100/s
    c.phase = c.scheduled_us < 5'000'000 ? 0 : 1;
    c.code = kOk;
    c.latency_us = (i + 1) * 1000;
    c.send_lag_us = i == 500 ? 3000 : 100;
    c.node = static_cast<int32_t>(i % 2);
    // node-a: 3 of 4 tokens cached; node-b: 1 of 4. EMB: 9 of 10 hits on both.
    c.info.cached_tokens = c.node == 0 ? 30 : 10;
    c.info.computed_tokens = c.node == 0 ? 10 : 30;
    c.info.emb_hits = 9;
    c.info.emb_misses = 1;
    c.info.queue_us = 200 + i;
    c.info.compute_us = 3000;
    c.info.batch_size = 1 + static_cast<int32_t>(i % 4);
    c.info.attempts = 1;
    run.completions.push_back(c);
  }
  for (int i = 0; i < 25; ++i) {
    Completion c;
    c.scheduled_us = 9'000'000 + i * 1000;  // all in the second phase, second 9
    c.phase = 1;
    c.code = i < 10 ? kDroppedCode : (i < 20 ? kDeadlineExceeded : kUnavailable);
    run.completions.push_back(c);
  }
  run.poll_targets = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
  run.samples = {Sample(-10'000, 0, "node-a", 0.50, 0, 0, 0, 0),
                 Sample(-10'000, 1, "node-b", 0.40, 100, 100, 0, 0),
                 Sample(2'500'000, 0, "node-a", 0.55, 50, 100, 80, 20),
                 Sample(2'500'000, 1, "node-b", 0.40, 150, 300, 10, 10),
                 Sample(7'500'000, 0, "node-a", 0.60, 100, 200, 160, 40),
                 Sample(7'500'000, 1, "node-b", 0.35, 200, 500, 20, 20),
                 Sample(10'200'000, 0, "node-a", 0.65, 150, 300, 240, 60),
                 Sample(10'200'000, 1, "node-b", 0.30, 250, 700, 30, 30)};
  NodeSample down;
  down.t_us = 0;
  down.target = 2;
  down.ok = false;
  down.error = "UNAVAILABLE: connection refused";
  run.samples.push_back(down);
  return run;
}

TEST(BenchStats, AttainmentGoodputAndErrorsOverTheWholeRun) {
  const Report report = BuildReport(MakeRun(), /*slo_ms=*/500.0);
  const Summary& o = report.overall;
  EXPECT_EQ(o.scheduled, 1025);
  EXPECT_EQ(o.sent, 1015);
  EXPECT_EQ(o.ok, 1000);
  EXPECT_EQ(o.dropped, 10);
  EXPECT_EQ(o.errors, 25);
  EXPECT_EQ(o.errors_by_code.at("DROPPED"), 10);
  EXPECT_EQ(o.errors_by_code.at("DEADLINE_EXCEEDED"), 10);
  EXPECT_EQ(o.errors_by_code.at("UNAVAILABLE"), 5);
  EXPECT_EQ(o.latency.p50_us, 500'000);
  EXPECT_EQ(o.latency.p90_us, 900'000);
  EXPECT_EQ(o.latency.p99_us, 990'000);
  EXPECT_EQ(o.latency.p999_us, 999'000);
  // 500 OK requests within 500 ms, out of 1025 scheduled (errors and drops are misses).
  EXPECT_EQ(o.ok_within_slo, 500);
  EXPECT_DOUBLE_EQ(o.slo_attainment, 500.0 / 1025.0);
  EXPECT_DOUBLE_EQ(o.duration_s, 10.0);
  EXPECT_DOUBLE_EQ(o.goodput_per_s, 50.0);
  EXPECT_DOUBLE_EQ(o.throughput_per_s, 100.0);
  EXPECT_DOUBLE_EQ(o.offered_per_s, 102.5);
  EXPECT_EQ(o.max_send_lag_us, 3000);
  // Reply-based hit ratios: (30 + 10) / 80 tokens cached; 9 of 10 EMB rows.
  EXPECT_DOUBLE_EQ(o.kv_token_hit_ratio, 0.5);
  EXPECT_DOUBLE_EQ(o.emb_hit_rate, 0.9);
  EXPECT_EQ(report.poll_errors.size(), 1u);
  EXPECT_NE(report.poll_errors[0].find("127.0.0.1:3"), std::string::npos);
}

TEST(BenchStats, PerPhaseAndPerNodeFigures) {
  const Report report = BuildReport(MakeRun(), 500.0);
  ASSERT_EQ(report.phases.size(), 2u);
  const Summary& steady = report.phases[0];
  const Summary& burst = report.phases[1];
  EXPECT_EQ(steady.name, "steady");
  EXPECT_EQ(steady.scheduled, 500);
  EXPECT_EQ(steady.ok_within_slo, 500);  // latencies 1..500 ms
  EXPECT_DOUBLE_EQ(steady.slo_attainment, 1.0);
  EXPECT_EQ(steady.latency.p99_us, 495'000);
  EXPECT_EQ(burst.scheduled, 525);
  EXPECT_EQ(burst.ok_within_slo, 0);
  EXPECT_DOUBLE_EQ(burst.goodput_per_s, 0.0);
  EXPECT_EQ(burst.errors, 25);

  // Nodes: the two that replied, then the polled target that never answered (by address).
  ASSERT_EQ(report.node_ids.size(), 3u);
  EXPECT_EQ(report.node_ids[0], "node-a");
  EXPECT_EQ(report.node_ids[2], "127.0.0.1:3");
  const NodeSummary& a = report.overall.nodes[0];
  const NodeSummary& b = report.overall.nodes[1];
  EXPECT_EQ(a.replies, 500);
  EXPECT_DOUBLE_EQ(a.kv_token_hit_ratio, 0.75);
  EXPECT_DOUBLE_EQ(b.kv_token_hit_ratio, 0.25);
  EXPECT_DOUBLE_EQ(a.split_first, 0.50);
  EXPECT_DOUBLE_EQ(a.split_last, 0.65);
  EXPECT_DOUBLE_EQ(a.split_min, 0.55);
  EXPECT_DOUBLE_EQ(a.split_max, 0.65);
  // The node's own counters over the run: 150 of 300 tokens, 240 of 300 rows.
  EXPECT_DOUBLE_EQ(a.node_kv_token_hit_ratio, 0.5);
  EXPECT_DOUBLE_EQ(a.node_emb_hit_rate, 0.8);
  EXPECT_DOUBLE_EQ(b.node_kv_token_hit_ratio, 150.0 / 600.0);
  EXPECT_LT(report.overall.nodes[2].split_last, 0);  // no data
  // Steady phase of node-b: baseline at t<0, last poll at 2.5 s: 50 of 200 tokens.
  EXPECT_DOUBLE_EQ(steady.nodes[1].node_kv_token_hit_ratio, 0.25);
  EXPECT_DOUBLE_EQ(steady.nodes[1].split_last, 0.40);
  // Burst phase of node-a: from the 2.5 s poll to the final one: 100 of 200 tokens.
  EXPECT_DOUBLE_EQ(burst.nodes[0].node_kv_token_hit_ratio, 0.5);
  EXPECT_DOUBLE_EQ(burst.nodes[0].split_first, 0.55);
}

TEST(BenchStats, PerSecondSeries) {
  const Report report = BuildReport(MakeRun(), 500.0);
  ASSERT_EQ(report.series.size(), 10u);
  const SecondRow& first = report.series[0];
  EXPECT_EQ(first.scheduled, 100);
  EXPECT_EQ(first.ok, 100);
  EXPECT_EQ(first.p50_us, 50'000);
  EXPECT_EQ(first.p99_us, 99'000);
  EXPECT_EQ(first.phase, 0);
  const SecondRow& last = report.series[9];
  EXPECT_EQ(last.phase, 1);
  EXPECT_EQ(last.scheduled, 125);
  EXPECT_EQ(last.dropped, 10);
  EXPECT_EQ(last.errors, 25);
  EXPECT_EQ(last.ok_within_slo, 0);
  // Splits from the baseline poll (second 0) and the polls inside seconds 2 and 7; none elsewhere.
  EXPECT_DOUBLE_EQ(report.series[0].split[0], 0.50);
  EXPECT_DOUBLE_EQ(report.series[2].split[0], 0.55);
  EXPECT_DOUBLE_EQ(report.series[7].split[1], 0.35);
  EXPECT_LT(report.series[3].split[0], 0);
  EXPECT_DOUBLE_EQ(report.series[4].kv_token_hit_ratio[0], 0.75);
}

TEST(BenchReport, WritesJsonCsvAndResultLines) {
  const Report report = BuildReport(MakeRun(), 500.0);
  RunInfo info;
  info.target = "127.0.0.1:50060";
  info.profile = "movielens-20m";
  info.phases = "steady:5,burst:5";
  const std::string dir = ::testing::TempDir();
  ASSERT_TRUE(WriteJson(report, info, dir + "/summary.json").ok());
  ASSERT_TRUE(WriteCsv(report, dir + "/timeseries.csv").ok());

  std::ifstream json_in(dir + "/summary.json");
  const nlohmann::json j = nlohmann::json::parse(json_in);
  EXPECT_EQ(j["overall"]["ok"], 1000);
  EXPECT_EQ(j["overall"]["errors_by_code"]["DEADLINE_EXCEEDED"], 10);
  EXPECT_EQ(j["overall"]["latency_us"]["p99"], 990000);
  EXPECT_DOUBLE_EQ(j["helm_result"]["slo_attainment"].get<double>(), 500.0 / 1025.0);
  EXPECT_EQ(j["phases"].size(), 2u);
  EXPECT_EQ(j["phases"][1]["name"], "burst");
  EXPECT_EQ(j["overall"]["nodes"][0]["node_id"], "node-a");
  EXPECT_TRUE(j["overall"]["nodes"][2]["split_last"].is_null());
  EXPECT_EQ(j["run"]["target"], "127.0.0.1:50060");

  std::ifstream csv_in(dir + "/timeseries.csv");
  std::string header;
  std::getline(csv_in, header);
  EXPECT_EQ(header.rfind("t_s,phase,scheduled,sent,ok,errors,dropped,ok_within_slo,p50_us,p99_us,"
                         "split:node-a,kv_hit:node-a,emb_hit:node-a,split:node-b",
                         0),
            0u)
      << header;
  std::vector<std::string> lines;
  for (std::string line; std::getline(csv_in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines[0].rfind("0,steady,100,100,100,0,0,100,50000,99000,0.5000,0.7500,0.9000,", 0), 0u)
      << lines[0];
  EXPECT_EQ(lines[2].rfind("2,steady,100,100,100,0,0,100,", 0), 0u);
  EXPECT_NE(lines[2].find(",0.5500,"), std::string::npos) << lines[2];

  const std::string results = ResultLines(report);
  EXPECT_NE(results.find("HELM_RESULT p99_us 990000\n"), std::string::npos) << results;
  EXPECT_NE(results.find("HELM_RESULT slo_attainment 0.4878\n"), std::string::npos) << results;
  EXPECT_NE(results.find("HELM_RESULT goodput_per_s 50.00\n"), std::string::npos) << results;
  EXPECT_NE(results.find("HELM_RESULT kv_token_hit_ratio 0.5000\n"), std::string::npos);
  EXPECT_NE(results.find("HELM_RESULT emb_hit_rate 0.9000\n"), std::string::npos);

  const std::string table = FormatTable(report, info);
  EXPECT_NE(table.find("DEADLINE_EXCEEDED 10"), std::string::npos) << table;
  EXPECT_NE(table.find("node-b"), std::string::npos);
  EXPECT_NE(table.find("node stats unavailable: 127.0.0.1:3"), std::string::npos);
}

TEST(BenchReport, HitRatiosAreLeftOutWhenNothingReportsThem) {
  RunResult run;
  workload::Phase phase;
  phase.name = "steady";
  phase.duration_us = 1'000'000;
  run.phases = {phase};
  run.duration_us = 1'000'000;
  Completion c;
  c.code = kOk;
  c.latency_us = 5000;
  run.completions = {c};
  const Report report = BuildReport(run, 80.0);
  const std::string results = ResultLines(report);
  EXPECT_NE(results.find("HELM_RESULT p99_us 5000"), std::string::npos);
  EXPECT_EQ(results.find("kv_token_hit_ratio"), std::string::npos) << results;
  EXPECT_EQ(results.find("emb_hit_rate"), std::string::npos) << results;
}

TEST(BenchReport, PlotIsSkippedWithAClearErrorWithoutMatplotlib) {
  const absl::Status status =
      MakePlot("/bin/false", "scripts/plot_bench.py", "in.csv", ::testing::TempDir() + "/p.png");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("matplotlib"), absl::string_view::npos);
}

TEST(BenchReport, PlotScriptWritesAPng) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 cannot import matplotlib";
  }
  const Report report = BuildReport(MakeRun(), 500.0);
  // Per-process names: concurrent runs of this test share the temporary directory.
  const std::string base = ::testing::TempDir() + "/plot_" + std::to_string(getpid());
  ASSERT_TRUE(WriteCsv(report, base + "_in.csv").ok());
  ASSERT_TRUE(WriteRequestsCsv(MakeRun(), base + "_requests.csv").ok());
  // Three panels from the time series alone; four with the requests' latency breakdown.
  for (const bool breakdown : {false, true}) {
    const std::string png = base + (breakdown ? "_4" : "_3") + "_out.png";
    std::remove(png.c_str());
    const std::vector<std::string> extra =
        breakdown ? std::vector<std::string>{"--requests", base + "_requests.csv"}
                  : std::vector<std::string>{};
    const absl::Status status = MakePlot(
        "/usr/bin/python3", HELM_SOURCE_DIR "/scripts/plot_bench.py", base + "_in.csv", png, extra);
    ASSERT_TRUE(status.ok()) << status;
    std::ifstream in(png, std::ios::binary);
    char magic[8] = {};
    in.read(magic, 8);
    EXPECT_EQ(std::string(magic + 1, 3), "PNG");
  }
}

TEST(BenchReport, RequestsCsvHasOneRowPerScheduledRequestWithItsServingInfo) {
  const RunResult run = MakeRun();
  const std::string path = ::testing::TempDir() + "/requests.csv";
  ASSERT_TRUE(WriteRequestsCsv(run, path).ok());
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), run.completions.size() + 1);
  EXPECT_EQ(lines[0],
            "seq,scheduled_ms,phase,code,node,send_lag_us,latency_us,queue_us,compute_us,"
            "batch_size,attempts,cached_tokens,computed_tokens,emb_hits,emb_misses");
  // Request 3: node-b, 1 ms latency per position, queue 203 us, a batch of 4.
  EXPECT_EQ(lines[4], "3,30.000,steady,0,node-b,100,4000,203,3000,4,1,10,30,9,1");
  // A dropped request: no node, no serving info.
  EXPECT_EQ(lines[1001], "1000,9000.000,burst,-1,,0,0,0,0,0,0,0,0,0,0");
  EXPECT_FALSE(WriteRequestsCsv(run, ::testing::TempDir() + "/no/such/dir/requests.csv").ok());
}

// The time outside the nodes, per OK reply: its latency less queue_us and compute_us (here 999 i -
// 2200 us for request i, so 0 for the first three), as helm-sim's transport calibration.
TEST(BenchReport, TransportCalibrationHasTheQuantilesOfTheTimeOutsideTheNodes) {
  const RunResult run = MakeRun();
  RunInfo info;
  info.profile = "kuairand";
  info.phases = "steady:5,burst:5";
  info.rate_per_s = 100;
  info.seed = 43;
  const std::string path = ::testing::TempDir() + "/transport.json";
  ASSERT_TRUE(WriteTransportCalibration(run, info, path).ok());
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["requests"], 1000) << "the OK replies only";
  EXPECT_NE(j["method"].get<std::string>().find("seed 43"), std::string::npos);
  const nlohmann::json& q = j["outside_us_quantiles"];
  ASSERT_EQ(q.size(), 103u) << "every percentile, 99.5, 99.9 and the maximum";
  EXPECT_EQ(q[0], nlohmann::json({0.0, 0}));
  EXPECT_EQ(q[50], nlohmann::json({0.5, 999 * 499 - 2200}));
  EXPECT_EQ(q[102], nlohmann::json({1.0, 999 * 999 - 2200}));
  RunResult none = run;
  for (Completion& c : none.completions) c.info = ReplyInfo();
  EXPECT_EQ(WriteTransportCalibration(none, info, path).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace helm::bench
