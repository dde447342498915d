#include "helm/metrics/registry.h"

#include <httplib.h>

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "helm/metrics/exporter.h"

namespace helm::metrics {
namespace {

TEST(Registry, RendersCountersGaugesAndCollectorsInTheTextFormat) {
  Registry registry;
  Family<Counter>& requests =
      registry.AddCounter("helm_requests_total", "Requests answered.", {"method", "status"});
  requests.WithLabels({"Rank", "OK"}).Increment(3);
  requests.WithLabels({"Rank", "CANCELLED"}).Increment();
  registry.AddGauge("helm_queue_depth", "Waiting requests.").WithLabels({}).Set(2.5);
  registry.AddCollector("helm_pool_emb_share", "EMB share.", MetricType::kGauge, {"kind"}, [] {
    return std::vector<Sample>{{{"target"}, 0.75}, {{"committed"}, 0.5}};
  });

  EXPECT_EQ(registry.Render(),
            "# HELP helm_requests_total Requests answered.\n"
            "# TYPE helm_requests_total counter\n"
            "helm_requests_total{method=\"Rank\",status=\"CANCELLED\"} 1\n"
            "helm_requests_total{method=\"Rank\",status=\"OK\"} 3\n"
            "# HELP helm_queue_depth Waiting requests.\n"
            "# TYPE helm_queue_depth gauge\n"
            "helm_queue_depth 2.5\n"
            "# HELP helm_pool_emb_share EMB share.\n"
            "# TYPE helm_pool_emb_share gauge\n"
            "helm_pool_emb_share{kind=\"committed\"} 0.5\n"
            "helm_pool_emb_share{kind=\"target\"} 0.75\n");
}

TEST(Registry, EscapesLabelValuesAndHelpText) {
  Registry registry;
  registry.AddCounter("helm_x_total", "Back\\slash and\nnewline \"quoted\".", {"node"})
      .WithLabels({"a\"b\\c\nd"})
      .Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP helm_x_total Back\\\\slash and\\nnewline \"quoted\".\n"
            "# TYPE helm_x_total counter\n"
            "helm_x_total{node=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(Registry, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry registry;
  Histogram& h =
      registry.AddHistogram("helm_latency_seconds", "Latency.", {0.01, 0.1, 1}, {"method"})
          .WithLabels({"Rank"});
  for (double v : {0.005, 0.01, 0.05, 0.5, 2.0}) h.Observe(v);
  EXPECT_EQ(registry.Render(),
            "# HELP helm_latency_seconds Latency.\n"
            "# TYPE helm_latency_seconds histogram\n"
            "helm_latency_seconds_bucket{method=\"Rank\",le=\"0.01\"} 2\n"
            "helm_latency_seconds_bucket{method=\"Rank\",le=\"0.1\"} 3\n"
            "helm_latency_seconds_bucket{method=\"Rank\",le=\"1\"} 4\n"
            "helm_latency_seconds_bucket{method=\"Rank\",le=\"+Inf\"} 5\n"
            "helm_latency_seconds_sum{method=\"Rank\"} 2.565\n"
            "helm_latency_seconds_count{method=\"Rank\"} 5\n");
}

TEST(Registry, HistogramWithoutLabelsHasOnlyTheLeLabel) {
  Registry registry;
  registry.AddHistogram("helm_batch_size", "Batch size.", PowerOfTwoBuckets(4)).WithLabels({});
  EXPECT_EQ(registry.Render(),
            "# HELP helm_batch_size Batch size.\n"
            "# TYPE helm_batch_size histogram\n"
            "helm_batch_size_bucket{le=\"1\"} 0\n"
            "helm_batch_size_bucket{le=\"2\"} 0\n"
            "helm_batch_size_bucket{le=\"4\"} 0\n"
            "helm_batch_size_bucket{le=\"+Inf\"} 0\n"
            "helm_batch_size_sum 0\n"
            "helm_batch_size_count 0\n");
}

TEST(Registry, SpecialValuesUsePrometheusSpelling) {
  Registry registry;
  registry.AddCollector("helm_g", "G.", MetricType::kGauge, {"k"}, [] {
    return std::vector<Sample>{{{"a"}, std::numeric_limits<double>::infinity()},
                               {{"b"}, -std::numeric_limits<double>::infinity()},
                               {{"c"}, std::nan("")},
                               {{"d"}, 1e-7},
                               {{"e"}, 123456789012.0}};
  });
  EXPECT_EQ(registry.Render(),
            "# HELP helm_g G.\n# TYPE helm_g gauge\n"
            "helm_g{k=\"a\"} +Inf\nhelm_g{k=\"b\"} -Inf\nhelm_g{k=\"c\"} NaN\n"
            "helm_g{k=\"d\"} 1e-07\nhelm_g{k=\"e\"} 123456789012\n");
}

TEST(Registry, ConcurrentIncrementsAreAllCounted) {
  Registry registry;
  Family<Counter>& family = registry.AddCounter("helm_c_total", "C.", {"t"});
  Histogram& h = registry.AddHistogram("helm_h", "H.", {1}).WithLabels({});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&family, &h, t] {
      for (int i = 0; i < kPerThread; ++i) {
        family.WithLabels({t % 2 == 0 ? "even" : "odd"}).Increment();
        h.Observe(0.5);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(family.WithLabels({"even"}).value(), 2 * kPerThread);
  EXPECT_EQ(family.WithLabels({"odd"}).value(), 2 * kPerThread);
  EXPECT_EQ(h.count(), uint64_t{kThreads * kPerThread});
  EXPECT_DOUBLE_EQ(h.sum(), 0.5 * kThreads * kPerThread);
}

TEST(Registry, ListsNamesInRegistrationOrder) {
  Registry registry;
  registry.AddGauge("helm_b", "B.");
  registry.AddCounter("helm_a_total", "A.");
  EXPECT_EQ(registry.Names(), (std::vector<std::string>{"helm_b", "helm_a_total"}));
}

TEST(Exporter, ServesTheRegistryAndRefusesABusyPort) {
  Registry registry;
  Counter& counter = registry.AddCounter("helm_c_total", "C.").WithLabels({});
  auto first = Exporter::Start(ExporterOptions{}, &registry);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_GT((*first)->port(), 0);

  counter.Increment(7);
  httplib::Client client("127.0.0.1", (*first)->port());
  const httplib::Result got = client.Get("/metrics");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, registry.Render());
  EXPECT_NE(got->body.find("helm_c_total 7\n"), std::string::npos);

  auto second = Exporter::Start(ExporterOptions{"127.0.0.1", (*first)->port()}, &registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);

  (*first)->Stop();
  (*first)->Stop();  // idempotent
  EXPECT_FALSE(client.Get("/metrics"));
}

}  // namespace
}  // namespace helm::metrics
