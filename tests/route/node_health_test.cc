// NodeHealth on a FakeClock: ejection, readmission and the health-check schedule, with no sleeps.
#include "helm/route/node_health.h"

#include <vector>

#include "gtest/gtest.h"
#include "helm/common/clock.h"

namespace helm::route {
namespace {

constexpr int64_t kIntervalUs = 50'000;

class NodeHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) cluster_.AddNode("n" + std::to_string(i));
  }
  ClusterState cluster_;
  FakeClock clock_{1'000'000};
  NodeHealth health_{&cluster_,
                     NodeHealthOptions{.failures_to_eject = 2, .check_interval_us = kIntervalUs},
                     &clock_};
};

TEST_F(NodeHealthTest, EjectsAfterConsecutiveFailuresAndReadmitsWhenACheckPasses) {
  for (int i = 0; i < 3; ++i) health_.OnHealthCheck(i, true, "");
  EXPECT_EQ(cluster_.Routable(), (NodeSet{0, 1, 2}));
  EXPECT_FALSE(health_.OnRequestResult(1, /*node_failed=*/true, "connection refused"));
  EXPECT_TRUE(cluster_.healthy(1));
  EXPECT_TRUE(health_.OnRequestResult(1, true, "connection refused"));
  EXPECT_TRUE(health_.ejected(1));
  EXPECT_EQ(cluster_.Routable(), (NodeSet{0, 2}));
  // Further failures do not eject it again.
  EXPECT_FALSE(health_.OnRequestResult(1, true, "connection refused"));
  // A failing check keeps it out; a passing one readmits it with a clean count.
  health_.OnHealthCheck(1, false, "NOT_SERVING");
  EXPECT_FALSE(cluster_.healthy(1));
  health_.OnHealthCheck(1, true, "");
  EXPECT_FALSE(health_.ejected(1));
  EXPECT_TRUE(cluster_.healthy(1));
  EXPECT_EQ(health_.consecutive_failures(1), 0);
}

TEST_F(NodeHealthTest, ASuccessBetweenFailuresResetsTheCount) {
  health_.OnHealthCheck(0, true, "");
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(health_.OnRequestResult(0, true, "unavailable"));
    EXPECT_FALSE(health_.OnRequestResult(0, false, ""));
  }
  EXPECT_TRUE(cluster_.healthy(0));
  EXPECT_EQ(health_.consecutive_failures(0), 0);
}

TEST_F(NodeHealthTest, ChecksFallDueByTheClock) {
  // Never checked: all due at once, then none until an interval of the clock has passed.
  EXPECT_EQ(health_.TakeDueChecks(), (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(health_.TakeDueChecks().empty());
  EXPECT_EQ(health_.MicrosUntilNextCheck(), kIntervalUs);
  clock_.AdvanceMicros(kIntervalUs - 1);
  EXPECT_TRUE(health_.TakeDueChecks().empty());
  EXPECT_EQ(health_.MicrosUntilNextCheck(), 1);
  clock_.AdvanceMicros(1);
  EXPECT_EQ(health_.MicrosUntilNextCheck(), 0);
  EXPECT_EQ(health_.TakeDueChecks(), (std::vector<int>{0, 1, 2}));
  // A node that joins later is due at once, the others keep their schedule.
  cluster_.AddNode("n3");
  EXPECT_EQ(health_.MicrosUntilNextCheck(), 0);
  EXPECT_EQ(health_.TakeDueChecks(), (std::vector<int>{3}));
}

TEST_F(NodeHealthTest, AnEjectedNodeComesBackOnlyByTheNextDueCheck) {
  health_.OnHealthCheck(2, true, "");
  ASSERT_EQ(health_.TakeDueChecks().size(), 3u);
  ASSERT_FALSE(health_.OnRequestResult(2, true, "down"));
  ASSERT_TRUE(health_.OnRequestResult(2, true, "down"));
  // The caller checks what is due, and nothing is until the interval passes (bounded: a clock
  // that never made it due would fail here rather than hang).
  int rounds = 0;
  for (; rounds < 100 && health_.ejected(2); ++rounds) {
    for (int node : health_.TakeDueChecks()) health_.OnHealthCheck(node, true, "");
    clock_.AdvanceMicros(kIntervalUs / 10);
  }
  EXPECT_FALSE(health_.ejected(2));
  EXPECT_TRUE(cluster_.healthy(2));
  EXPECT_EQ(rounds, 11);  // due exactly one interval after the last check
}

TEST_F(NodeHealthTest, StreamsAndNodeListChangesTakeNodesOut) {
  for (int i = 0; i < 3; ++i) health_.OnHealthCheck(i, true, "");
  health_.OnStreamEnded(0, /*unreachable=*/false);  // e.g. cancelled: no verdict
  EXPECT_TRUE(cluster_.healthy(0));
  health_.OnStreamEnded(0, /*unreachable=*/true);
  EXPECT_FALSE(cluster_.healthy(0));
  health_.SetRemoved(1, true);
  EXPECT_FALSE(cluster_.healthy(1));
  EXPECT_EQ(health_.TakeDueChecks(), (std::vector<int>{0, 2}));  // removed: not checked
  health_.OnHealthCheck(1, true, "");  // a check answered after the node left counts nothing
  EXPECT_FALSE(cluster_.healthy(1));
  health_.SetRemoved(1, false);
  EXPECT_EQ(health_.TakeDueChecks(), (std::vector<int>{1}));  // back: checked at once
}

}  // namespace
}  // namespace helm::route
