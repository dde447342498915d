// The calibration fit and the calibration file (include/helm/sim/calibration.h).
#include "helm/sim/calibration.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "helm/sim/cost_model.h"

namespace helm::sim {
namespace {

// A file under the test's temp directory, apart from any other copy of this binary running.
std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(getpid()) + "-" + name;
}

TEST(RelativeNnls, RecoversCoefficientsOfFeaturesOfVeryDifferentScales) {
  // y = 2e-9 * flops + 3 * rows + 40: features 1e9 apart.
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  for (int i = 1; i <= 20; ++i) {
    const double flops = 1e9 * i * (i % 3 + 1), rows = 100.0 * (21 - i);
    x.push_back({flops, rows, 1.0});
    y.push_back(2e-9 * flops + 3 * rows + 40);
  }
  const std::vector<double> a = RelativeNnls(x, y);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_NEAR(a[0], 2e-9, 1e-12);
  EXPECT_NEAR(a[1], 3, 1e-6);
  EXPECT_NEAR(a[2], 40, 1e-3);
}

TEST(RelativeNnls, DropsACoefficientThatWouldBeNegativeAndRefitsTheRest) {
  // y = 5 * u - 1 (the constant would be negative): the fit keeps a >= 0.
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  for (int i = 1; i <= 10; ++i) {
    x.push_back({static_cast<double>(i), 1.0});
    y.push_back(5.0 * i - 1.0);
  }
  const std::vector<double> a = RelativeNnls(x, y);
  EXPECT_EQ(a[1], 0.0);
  EXPECT_GT(a[0], 4.0);
  EXPECT_LT(a[0], 5.0);
}

TEST(WriteCalibration, WritesAFileLoadCalibrationReadsBackAsEffectiveRates) {
  absl::StatusOr<CostProfile> base = ProfileByName("a100-80g");
  ASSERT_TRUE(base.ok());
  CostProfile p = *base;  // efficiencies below 1: the file holds effective rates
  p.batch_fixed_us = 12.5;
  p.host_gather_bytes_per_s = 2.25e9;
  CalibrationNotes notes;
  notes.base = "a100-80g";
  notes.machine = "a \"quoted\" machine\\with a backslash";
  notes.method = "by hand";
  notes.date = "2026-12-05T00:00:00Z";
  const std::string path = TempPath("calibration.json");
  ASSERT_TRUE(WriteCalibration(path, p, notes).ok());
  absl::StatusOr<CostProfile> back = LoadCalibration(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_DOUBLE_EQ(back->dense_efficiency, 1.0);
  EXPECT_NEAR(back->dense_flops_per_s, p.effective_dense_flops_per_s(), 1e-5 * p.dense_flops_per_s);
  EXPECT_NEAR(back->effective_memory_bytes_per_s(), p.effective_memory_bytes_per_s(),
              1e-5 * p.memory_bytes_per_s);
  EXPECT_DOUBLE_EQ(back->batch_fixed_us, 12.5);
  EXPECT_DOUBLE_EQ(back->host_gather_bytes_per_s, 2.25e9);
  EXPECT_EQ(back->attention_query_tile, p.attention_query_tile);
  EXPECT_EQ(back->on_device, p.on_device);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("\"machine\": \"a 'quoted' machine/with a backslash\""),
            std::string::npos)
      << text.str();
}

TEST(WriteCalibration, RefusesABadProfileNamingTheFieldAndAnUnwritablePath) {
  absl::StatusOr<CostProfile> p = ProfileByName("cpu");
  ASSERT_TRUE(p.ok());
  CostProfile bad = *p;
  bad.dense_flops_per_s = 0;
  const absl::Status s = WriteCalibration(TempPath("bad.json"), bad, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dense_flops_per_s"), std::string::npos) << s;
  EXPECT_FALSE(WriteCalibration(TempPath("no/such/dir/c.json"), *p, {}).ok());
}

}  // namespace
}  // namespace helm::sim
