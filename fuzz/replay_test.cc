// Replays every committed fuzz input through its target's entry function: the seed corpus
// (fuzz/corpus/<target>/) and the regression inputs of crashes found and fixed
// (tests/fuzz_regressions/<target>/). A regression input that crashes again fails this test (the
// process dies, naming the file in the output); run it under a sanitizer build for the full
// report. Runs in the source root (CTest's working directory).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "gtest/gtest.h"
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

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay,
                         ::testing::ValuesIn(AllTargets().begin(), AllTargets().end()),
                         [](const ::testing::TestParamInfo<FuzzTarget>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace helm::fuzz
