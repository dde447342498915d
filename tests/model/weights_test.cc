// Safetensors weights: round trip, and bad files fail with a message naming what is wrong.
#include "helm/model/weights.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "model/model_test_util.h"
#include "nlohmann/json.hpp"

namespace helm::model {
namespace {

using testing::SmallDims;

std::string TempPath(const std::string& name) {
  // The pid keeps concurrent runs of this binary off each other's files.
  return ::testing::TempDir() + "helm_weights_" + std::to_string(getpid()) + "_" + name +
         ".safetensors";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Splits a safetensors file into its JSON header and data, and joins them back.
struct Parts {
  nlohmann::json header;
  std::string data;
};
Parts Split(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  return {nlohmann::json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}
std::string Join(const Parts& p) {
  const std::string text = p.header.dump();
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out + text + p.data;
}

std::string LoadError(const std::string& path, const ModelDims& dims) {
  auto w = Weights::Load(path, dims);
  EXPECT_FALSE(w.ok());
  return w.ok() ? "" : std::string(w.status().message());
}

TEST(Weights, SaveLoadRoundTripsEveryTensor) {
  const ModelDims dims = SmallDims();
  auto w = Weights::Random(dims, 99);
  const std::string path = TempPath("roundtrip");
  ASSERT_TRUE(w->Save(path).ok());
  auto loaded = Weights::Load(path, dims);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ((*loaded)->specs().size(), w->specs().size());
  for (const auto& spec : w->specs()) {
    for (int64_t i = 0; i < spec.elements(); ++i) {
      ASSERT_EQ((*loaded)->Get(spec.name)[i], w->Get(spec.name)[i]) << spec.name << "[" << i << "]";
    }
  }
  // Same seed, same weights; another seed, other weights.
  EXPECT_EQ(Weights::Random(dims, 99)->Get("head.weight")[3], w->Get("head.weight")[3]);
  EXPECT_NE(Weights::Random(dims, 100)->Get("head.weight")[3], w->Get("head.weight")[3]);
}

TEST(Weights, ProjectionTensorsExistOnlyWhenEmbeddingWidthDiffers) {
  ModelDims dims = SmallDims();
  dims.emb_dim = dims.d_model;
  for (const auto& s : WeightSpecs(dims)) EXPECT_NE(s.name, "item_proj.weight");
  dims.emb_dim = dims.d_model + 1;
  bool found = false;
  for (const auto& s : WeightSpecs(dims)) found = found || s.name == "item_proj.weight";
  EXPECT_TRUE(found);
}

class BadWeights : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Weights::Random(dims_, 5)->Save(good_).ok());
    parts_ = Split(ReadFile(good_));
  }
  ModelDims dims_ = SmallDims();
  std::string good_ = TempPath("good");
  Parts parts_;
};

TEST_F(BadWeights, MissingTensorIsNamed) {
  parts_.header.erase("layers.1.uvqk.bias");
  WriteFile(TempPath("missing"), Join(parts_));
  const std::string e = LoadError(TempPath("missing"), dims_);
  EXPECT_NE(e.find("missing tensor 'layers.1.uvqk.bias'"), std::string::npos) << e;
}

TEST_F(BadWeights, WrongShapeIsNamedWithBothShapes) {
  parts_.header["head.weight"]["shape"] = {8, 32};
  WriteFile(TempPath("shape"), Join(parts_));
  const std::string e = LoadError(TempPath("shape"), dims_);
  EXPECT_NE(e.find("'head.weight': shape must be [16, 16], got [8, 32]"), std::string::npos) << e;
}

TEST_F(BadWeights, WrongDtypeIsNamed) {
  parts_.header["action_emb"]["dtype"] = "F16";
  WriteFile(TempPath("dtype"), Join(parts_));
  const std::string e = LoadError(TempPath("dtype"), dims_);
  EXPECT_NE(e.find("'action_emb': dtype must be F32, got F16"), std::string::npos) << e;
}

TEST_F(BadWeights, TruncatedDataNamesTheFirstTensorPastTheEnd) {
  const std::string bytes = Join(parts_);
  WriteFile(TempPath("truncated"), bytes.substr(0, bytes.size() - 100));
  const std::string e = LoadError(TempPath("truncated"), dims_);
  EXPECT_NE(e.find("truncated file"), std::string::npos) << e;
  EXPECT_NE(e.find("tensor '"), std::string::npos) << e;
}

TEST_F(BadWeights, TruncatedHeaderAndTinyFilesFail) {
  const std::string bytes = Join(parts_);
  WriteFile(TempPath("header"), bytes.substr(0, 40));
  EXPECT_NE(LoadError(TempPath("header"), dims_).find("truncated"), std::string::npos);
  WriteFile(TempPath("tiny"), "abc");
  EXPECT_NE(LoadError(TempPath("tiny"), dims_).find("truncated"), std::string::npos);
}

TEST_F(BadWeights, UnexpectedTensorAndGarbageHeaderFail) {
  Parts extra = parts_;
  extra.header["layers.9.uvqk.weight"] = parts_.header["head.bias"];
  WriteFile(TempPath("extra"), Join(extra));
  EXPECT_NE(LoadError(TempPath("extra"), dims_).find("unexpected tensor 'layers.9.uvqk.weight'"),
            std::string::npos);
  std::string garbage(8, '\0');
  garbage[0] = 5;
  WriteFile(TempPath("garbage"), garbage + "{{{{{");
  EXPECT_NE(LoadError(TempPath("garbage"), dims_).find("not a JSON object"), std::string::npos);
}

TEST_F(BadWeights, OtherModelOptionsAreRejected) {
  ModelDims other = dims_;
  other.num_layers = 4;
  const std::string e = LoadError(good_, other);
  EXPECT_NE(e.find("missing tensor 'layers.3."), std::string::npos) << e;
}

TEST(Weights, HelmWeightsToolWritesAFileTheDefaultModelLoads) {
  // CTest sets HELM_BIN_DIR; run by hand, the test needs it too.
  const char* bin_dir = std::getenv("HELM_BIN_DIR");
  if (bin_dir == nullptr) GTEST_SKIP() << "HELM_BIN_DIR not set (run through ctest)";
  const std::string path = TempPath("tool");
  std::remove(path.c_str());
  const std::string command = std::string(bin_dir) + "/helm-weights --out " + path +
                              " --seed 3 --log-level off > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  ModelOptions options;
  emb::EmbOptions emb;
  kv::KvOptions kv;
  auto dims = DimsFromOptions(options, emb, kv);
  ASSERT_TRUE(dims.ok());
  auto loaded = Weights::Load(path, *dims);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->Get("action_emb")[5], Weights::Random(*dims, 3)->Get("action_emb")[5]);
}

TEST(Weights, MissingFileIsNotFound) {
  auto w = Weights::Load("/nonexistent/helm.safetensors", SmallDims());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
}

TEST(Weights, ModelLoadsTheFileNamedInItsOptions) {
  ModelOptions options;
  emb::EmbOptions emb;
  kv::KvOptions kv;
  options.kernels = "reference";
  auto dims = DimsFromOptions(options, emb, kv);
  ASSERT_TRUE(dims.ok());
  const std::string path = TempPath("options");
  ASSERT_TRUE(Weights::Random(*dims, 11)->Save(path).ok());
  options.weights_path = path;
  EXPECT_TRUE(Model::Create(options, emb, kv).ok());
  options.d_v = 16;  // the file was written for d_v 32
  const absl::Status s = Model::Create(options, emb, kv).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("shape must be"), std::string::npos) << s;
}

}  // namespace
}  // namespace helm::model
