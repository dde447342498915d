// Replays every committed fuzz input through its target's entry function: the seed corpus
// (fuzz/corpus/<target>/) and the regression inputs of crashes found and fixed
// (tests/fuzz_regressions/<target>/). A regression input that crashes again fails this test (the
// process dies, naming the file in the output); run it under a sanitizer build for the full
// report. Runs in the source root (CTest's working directory).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_model.h"
#include "fuzz_targets.h"
#include "gtest/gtest.h"
#include "helm/config/config.h"
#include "helm/emb/host_table.h"
#include "helm/model/weights.h"
#include "helm/serve/validate.h"
#include "helm/v1/recommender.pb.h"
#include "helm/workload/trace.h"
#include "spdlog/spdlog.h"

namespace helm::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> FilesIn(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename().string().front() != '.') {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<uint8_t> ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

class FuzzReplay : public ::testing::TestWithParam<FuzzTarget> {};

TEST_P(FuzzReplay, EveryCommittedInputRunsCleanly) {
  spdlog::set_level(spdlog::level::off);
  const FuzzTarget target = GetParam();
  const std::vector<fs::path> seeds = FilesIn(fs::path("fuzz/corpus") / target.name);
  EXPECT_FALSE(seeds.empty()) << "no seed corpus for " << target.name << " (run from the root)";
  std::vector<fs::path> inputs = seeds;
  for (const fs::path& p : FilesIn(fs::path("tests/fuzz_regressions") / target.name)) {
    inputs.push_back(p);
  }
  for (const fs::path& p : inputs) {
    SCOPED_TRACE(p.string());
    std::fprintf(stderr, "replaying %s\n", p.c_str());  // names the input if it crashes
    const std::vector<uint8_t> bytes = ReadAll(p);
    EXPECT_EQ(target.entry(bytes.data(), bytes.size()), 0);
  }
}

TEST(FuzzReplay, EmptyAndTinyInputsRunCleanly) {
  const uint8_t bytes[] = {0, 0xff, 0x0a, 0x80};
  for (const FuzzTarget& t : AllTargets()) {
    for (size_t n = 0; n <= sizeof(bytes); ++n) EXPECT_EQ(t.entry(bytes, n), 0) << t.name;
  }
}

// The seeds must be inputs the code under test accepts: mutations of them then reach the code
// past the first checks (a corpus of rejected seeds would fuzz little more than the header parse).
TEST(FuzzSeeds, AreAcceptedByTheCodeUnderTest) {
  const fs::path corpus = "fuzz/corpus";
  EXPECT_TRUE(
      model::Weights::Load((corpus / "safetensors/valid.safetensors").string(), FuzzModelDims())
          .ok());
  for (const auto& [name, dtype] :
       {std::pair{"fp32.npy", Dtype::kFp32}, std::pair{"fp16.npy", Dtype::kFp16},
        std::pair{"bf16.npy", Dtype::kBf16}}) {
    EXPECT_TRUE(
        emb::HostTable::OpenNpy((corpus / "npy" / name).string(), kFuzzNpyRows, kFuzzNpyCols, dtype)
            .ok())
        << name;
  }
  for (const fs::path& p : FilesIn(corpus / "config")) {
    const std::vector<uint8_t> bytes = ReadAll(p);
    EXPECT_TRUE(config::ParseConfig(std::string(bytes.begin(), bytes.end()), p.string()).ok()) << p;
  }
  for (const fs::path& p : FilesIn(corpus / "trace_csv")) {
    const std::vector<uint8_t> bytes = ReadAll(p);
    ASSERT_FALSE(bytes.empty());
    std::istringstream in(std::string(bytes.begin() + 1, bytes.end()));  // byte 0: options
    workload::TraceParseOptions options;
    options.num_actions = 1 + (bytes[0] & 7);
    options.max_items = (bytes[0] & 0x10) ? 1000 : 0;
    options.fold_items = (bytes[0] & 0x20) != 0;
    EXPECT_TRUE(workload::ParseTrace(in, p.string(), options).ok()) << p;
  }
  const std::vector<uint8_t> request_bytes = ReadAll(corpus / "rank_request/valid.bin");
  v1::RankRequest request;
  ASSERT_TRUE(request.ParseFromArray(request_bytes.data(), static_cast<int>(request_bytes.size())));
  EXPECT_TRUE(serve::ValidateRankRequest(request, serve::RequestLimits{.max_history = 512,
                                                                       .max_candidates = 64,
                                                                       .num_items = 1000,
                                                                       .num_actions = 4})
                  .ok());
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay,
                         ::testing::ValuesIn(AllTargets().begin(), AllTargets().end()),
                         [](const ::testing::TestParamInfo<FuzzTarget>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace helm::fuzz
