#include "helm/workload/trace.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "helm/workload/generator.h"

namespace helm::workload {
namespace {

absl::StatusOr<std::vector<TraceEvent>> Parse(const std::string& text,
                                              TraceParseOptions options = {}) {
  std::istringstream in(text);
  return ParseTrace(in, "t.csv", options);
}

void ExpectError(const std::string& text, const std::string& fragment,
                 TraceParseOptions options = {}) {
  absl::StatusOr<std::vector<TraceEvent>> events = Parse(text, options);
  ASSERT_FALSE(events.ok()) << text;
  EXPECT_EQ(events.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(events.status().message().find(fragment), absl::string_view::npos)
      << "got: " << events.status().message() << "\nwanted: " << fragment;
}

TEST(TraceParse, ReadsEventsWithOrWithoutHeader) {
  absl::StatusOr<std::vector<TraceEvent>> events =
      Parse("user_id,item_id,action,timestamp_ms\n1,10,0,1000\n\n 2 , 20 ,3, 2000\r\n");
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].user_id, 1);
  EXPECT_EQ((*events)[0].item_id, 10);
  EXPECT_EQ((*events)[0].line, 2);
  EXPECT_EQ((*events)[1].user_id, 2);
  EXPECT_EQ((*events)[1].item_id, 20);
  EXPECT_EQ((*events)[1].action, 3);
  EXPECT_EQ((*events)[1].timestamp_ms, 2000);
  EXPECT_EQ((*events)[1].line, 4);

  events = Parse("5,6,1,7\n");
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].user_id, 5);
}

TEST(TraceParse, MalformedLinesNameTheLineAndTheReason) {
  ExpectError("1,2,0,100\n1,2,0\n", "t.csv:2: expected 4 comma-separated fields");
  ExpectError("1,2,0,100\n1,2,0,100,5\n", "t.csv:2: expected 4 comma-separated fields");
  ExpectError("1,abc,0,100\n", "t.csv:1: item_id 'abc' is not an integer");
  ExpectError("1,2,0,100\n\n-3,2,0,100\n", "t.csv:3: user_id -3 is negative");
  ExpectError("1,2,9,100\n", "t.csv:1: action 9 is out of range [0, 8)");
  ExpectError("1,2,0,\n", "t.csv:1: timestamp_ms is empty");
  ExpectError("1,2,0,1.5\n", "timestamp_ms '1.5' is not an integer");
  ExpectError("header,that,is,wrong\n1,2,0,100\n", "t.csv:1: user_id 'header' is not an integer");
  ExpectError("", "t.csv: the trace has no events");
  TraceParseOptions capped;
  capped.max_items = 100;
  ExpectError("1,2,0,100\n1,100,0,200\n", "t.csv:2: item_id 100 is outside the catalog", capped);
}

TEST(TraceParse, FoldsItemsIntoTheCatalogWhenAsked) {
  TraceParseOptions options;
  options.max_items = 100;
  options.fold_items = true;
  absl::StatusOr<std::vector<TraceEvent>> events = Parse("1,250,0,100\n", options);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ((*events)[0].item_id, 50);
}

std::string WriteFile(const std::string& name, const std::string& text) {
  // The pid keeps concurrent runs of this binary off each other's files.
  const std::string path = ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(TraceReplay, EachLaterEventIsARequestWithTheHistoryBeforeIt) {
  // Out of time order on purpose: replay sorts by timestamp (file order among equal ones).
  const std::string path = WriteFile("replay.csv",
                                     "user_id,item_id,action,timestamp_ms\n"
                                     "7,100,1,3000\n"
                                     "7,101,2,1000\n"
                                     "8,200,0,1500\n"
                                     "7,102,0,2000\n"
                                     "8,201,1,2500\n");
  WorkloadOptions options;
  options.profile = "trace";
  options.trace_path = path;
  options.trace_speedup = 1000.0;  // 1 s of trace per ms
  options.candidates = 4;
  options.candidate_popular_share = 0.5;
  options.max_items = 1000;
  std::unique_ptr<Generator> generator = *Generator::Create(options);
  ASSERT_EQ(generator->phases().size(), 1u);
  EXPECT_EQ(generator->phases()[0].regime, Regime::kTrace);
  EXPECT_EQ(generator->num_users(), 2);
  EXPECT_EQ(generator->num_items(), 1000);

  // Replay order: (7,101,t1000) (8,200,t1500) (7,102,t2000) (8,201,t2500) (7,100,t3000).
  Request r;
  ASSERT_TRUE(generator->Next(&r));
  EXPECT_EQ(r.user_id, 7);
  EXPECT_EQ(r.arrival_us, 0);
  EXPECT_TRUE(r.first_visit);
  EXPECT_EQ(std::vector<int64_t>(r.history_item_ids.begin(), r.history_item_ids.end()),
            std::vector<int64_t>({101}));
  EXPECT_EQ(std::vector<int32_t>(r.history_actions.begin(), r.history_actions.end()),
            std::vector<int32_t>({2}));
  ASSERT_EQ(r.candidate_item_ids.size(), 4u);
  EXPECT_EQ(r.candidate_item_ids[0], 102);  // the item the user engaged with next

  ASSERT_TRUE(generator->Next(&r));
  EXPECT_EQ(r.user_id, 8);
  EXPECT_EQ(r.arrival_us, 500);  // (2500 - 2000) ms / 1000
  EXPECT_EQ(std::vector<int64_t>(r.history_item_ids.begin(), r.history_item_ids.end()),
            std::vector<int64_t>({200}));
  EXPECT_EQ(r.candidate_item_ids[0], 201);

  ASSERT_TRUE(generator->Next(&r));
  EXPECT_EQ(r.user_id, 7);
  EXPECT_EQ(r.arrival_us, 1000);
  EXPECT_FALSE(r.first_visit);
  EXPECT_EQ(r.new_events, 1);
  EXPECT_EQ(std::vector<int64_t>(r.history_item_ids.begin(), r.history_item_ids.end()),
            std::vector<int64_t>({101, 102}));
  EXPECT_EQ(std::vector<int64_t>(r.history_timestamps_ms.begin(), r.history_timestamps_ms.end()),
            std::vector<int64_t>({1000, 2000}));
  EXPECT_EQ(r.candidate_item_ids[0], 100);
  EXPECT_FALSE(generator->Next(&r));
}

TEST(TraceReplay, EveryKthEventAndPoissonTimingAndTheHistoryCap) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "3," + std::to_string(i) + ",0," + std::to_string(i) + "\n";
  WorkloadOptions options;
  options.profile = "trace";
  options.trace_path = WriteFile("kth.csv", text);
  options.trace_events_per_request = 4;
  options.rate_per_s = 1000;
  options.max_history = 8;
  options.candidates = 2;
  std::unique_ptr<Generator> generator = *Generator::Create(options);
  Request r;
  std::vector<size_t> lengths;
  std::vector<int64_t> first_items;
  int64_t last_arrival = -1;
  int truncated = 0;
  while (generator->Next(&r)) {
    lengths.push_back(r.history_item_ids.size());
    first_items.push_back(r.history_item_ids.front());
    EXPECT_GE(r.arrival_us, last_arrival);
    last_arrival = r.arrival_us;
    EXPECT_EQ(r.candidate_item_ids[0], r.history_item_ids.back() + 1);
    truncated += r.truncated ? 1 : 0;
  }
  // Requests at events 4, 8, ..., 36 (9 of them); the history is capped at 8 and drops to 6.
  ASSERT_EQ(lengths.size(), 9u);
  EXPECT_EQ(lengths[0], 4u);
  EXPECT_EQ(lengths[1], 8u);
  for (size_t len : lengths) EXPECT_LE(len, 8u);
  EXPECT_GT(truncated, 0);
  EXPECT_EQ(first_items[0], 0);
  EXPECT_GT(first_items.back(), 0);
  // Poisson at 1000/s: 9 requests within ~9 ms on average.
  EXPECT_LT(last_arrival, 100'000);
}

TEST(TraceReplay, ErrorsAreClear) {
  WorkloadOptions options;
  options.profile = "trace";
  options.trace_path = ::testing::TempDir() + "/does_not_exist.csv";
  absl::StatusOr<std::unique_ptr<Generator>> g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kNotFound);

  options.trace_path = WriteFile("single.csv", "1,2,0,100\n2,3,0,200\n");
  g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("no request"), absl::string_view::npos) << g.status();

  options.trace_path = WriteFile("bad.csv", "1,2,0,100\n1,2,x,200\n");
  g = Generator::Create(options);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("bad.csv:2: action 'x' is not an integer"),
            absl::string_view::npos)
      << g.status();

  options.trace_path.clear();
  EXPECT_FALSE(Generator::Create(options).ok());
}

}  // namespace
}  // namespace helm::workload
