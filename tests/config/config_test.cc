#include "helm/config/config.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace helm::config {
namespace {

using ::testing::HasSubstr;

absl::Status ParseError(const std::string& yaml) { return ParseConfig(yaml, "test.yaml").status(); }

void ExpectError(const std::string& yaml, const std::string& expected) {
  const absl::Status status = ParseError(yaml);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << yaml;
  EXPECT_THAT(std::string(status.message()), HasSubstr(expected)) << yaml;
}

TEST(Config, EmptyTextGivesDefaults) {
  absl::StatusOr<Config> config = ParseConfig("", "empty");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->pool.chunk_bytes, int64_t{2} << 20);
  EXPECT_EQ(config->router.policy, "helm");
}

TEST(Config, ReadsValuesAndByteSuffixes) {
  absl::StatusOr<Config> config = ParseConfig(R"(
pool:
  bytes: 3GiB
  chunk_bytes: 512KiB
  initial_split: 0.25
node:
  workers: 7
  id: n7
router:
  nodes: [a:1, b:2, c:3]
kv:
  allow_trim: false
emb:
  seed: 18446744073709551615
)",
                                              "t");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->pool.bytes, int64_t{3} << 30);
  EXPECT_EQ(config->pool.chunk_bytes, 512 << 10);
  EXPECT_DOUBLE_EQ(config->pool.initial_split, 0.25);
  EXPECT_EQ(config->node.workers, 7);
  EXPECT_EQ(config->node.id, "n7");
  EXPECT_EQ(config->router.nodes, (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_FALSE(config->kv.allow_trim);
  EXPECT_EQ(config->emb.seed, 18446744073709551615ull);
}

TEST(Config, UnknownKeyIsNamedWithSuggestion) {
  ExpectError("pool:\n  chunk_byte: 1MiB\n", "unknown key 'pool.chunk_byte'");
  ExpectError("pool:\n  chunk_byte: 1MiB\n", "did you mean 'pool.chunk_bytes'");
  ExpectError("nodes:\n  workers: 1\n", "unknown key 'nodes'");
}

TEST(Config, WrongTypesAreNamed) {
  ExpectError("node:\n  workers: many\n", "node.workers: expected an integer, got 'many'");
  ExpectError("node:\n  workers: 1.5\n", "node.workers: expected an integer");
  ExpectError("pool:\n  initial_split: half\n", "pool.initial_split: expected a number");
  ExpectError("kv:\n  allow_trim: maybe\n", "kv.allow_trim: expected true or false");
  ExpectError("router:\n  nodes: a:1\n", "router.nodes: expected a list of strings");
  ExpectError("node:\n  id: [a, b]\n", "node.id: expected a single value");
  ExpectError("pool: 5\n", "pool: expected a map of options");
  ExpectError("emb:\n  seed: -1\n", "emb.seed: expected a non-negative integer");
  ExpectError("node:\n  workers: 99999999999\n", "node.workers: expected an integer in");
  // Numbers are finite: nan and inf slip past every range check.
  ExpectError("workload:\n  rate_per_s: nan\n", "workload.rate_per_s: expected a number");
  ExpectError("simulator:\n  load: inf\n", "simulator.load: expected a number");
  ExpectError("simulator:\n  load_basis: mean\n", "simulator.load_basis");
}

TEST(Config, OutOfRangeValuesNameKeyAndRange) {
  ExpectError("pool:\n  chunk_bytes: 1000\n",
              "pool.chunk_bytes: must be a power of two >= 65536, got 1000");
  ExpectError("node:\n  workers: 0\n", "node.workers: must be in [1, 256], got 0");
  ExpectError("pool:\n  r_max: 1.5\n", "pool.r_max: must be in [0, 1], got 1.5");
  ExpectError("router:\n  policy: random\n", "router.policy: must be one of {helm, round_robin");
  ExpectError("emb:\n  dtype: int8\n", "emb.dtype: must be one of {fp32, fp16, bf16}");
  ExpectError("node:\n  id: \"\"\n", "node.id: must not be empty");
  ExpectError("log:\n  level: loud\n", "log.level: must be one of");
}

TEST(Config, CrossFieldChecksNameTheKey) {
  ExpectError("pool:\n  r_min: 0.6\n  r_max: 0.4\n", "pool.r_min: must be <= r_max");
  ExpectError("pool:\n  initial_split: 0.99\n", "pool.initial_split: must be in [r_min, r_max]");
  ExpectError("pool:\n  bytes: 2MiB\n  chunk_bytes: 2MiB\n", "pool.bytes: must hold at least two");
  ExpectError("router:\n  dns: nodes.local\n", "router.nodes: give either");
  ExpectError("model:\n  num_layers: 64\n  num_heads: 64\nkv:\n  tokens_per_block: 1024\n",
              "kv.tokens_per_block: a KV block");
  ExpectError("control:\n  kv_shadows: 1\n", "control.kv_shadows: must be 0 (none) or at least 2");
  ExpectError("control:\n  emb_shadows: 1\n",
              "control.emb_shadows: must be 0 (none) or at least 2");
  ExpectError("control:\n  emb_shadow_rows: 100\n", "control.emb_shadow_rows");
  ExpectError("control:\n  burst_short_windows: 9\n  burst_long_windows: 9\n",
              "control.burst_short_windows: must be < burst_long_windows");
}

TEST(Config, ReportsEveryErrorAtOnce) {
  const absl::Status status = ParseError("node:\n  workers: 0\n  bogus: 1\npool:\n  r_max: 2\n");
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr("node.workers"));
  EXPECT_THAT(message, HasSubstr("node.bogus"));
  EXPECT_THAT(message, HasSubstr("pool.r_max"));
}

TEST(Config, MalformedYamlIsAnError) {
  ExpectError("pool: [unclosed\n", "test.yaml: not valid YAML");
  ExpectError("- a\n- b\n", "expected a map of sections");
}

TEST(Config, PrintedConfigParsesBackToTheSameConfig) {
  absl::StatusOr<Config> config =
      ParseConfig("pool:\n  bytes: 1GiB\nrouter:\n  nodes: [\"x:1\", \"y # z:2\"]\n", "t");
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string yaml = ConfigToYaml(*config);
  EXPECT_THAT(yaml, HasSubstr("chunk_bytes: 2097152  # chunk size"));
  absl::StatusOr<Config> again = ParseConfig(yaml, "printed");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
  EXPECT_EQ(ConfigToYaml(*again), yaml);
  EXPECT_EQ(again->router.nodes, config->router.nodes);
}

TEST(Config, ShippedConfigsAreValid) {
  // The serving configs and every simulator config (configs/train/ has its own schema).
  int loaded = 0;
  for (const char* dir : {"configs", "configs/sim"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() != ".yaml") continue;
      absl::StatusOr<Config> config = LoadConfigFile(entry.path().string());
      EXPECT_TRUE(config.ok()) << entry.path() << ": " << config.status();
      ++loaded;
    }
  }
  EXPECT_GE(loaded, 8);
  absl::StatusOr<Config> a100 = LoadConfigFile("configs/a100-80g.yaml");
  ASSERT_TRUE(a100.ok());
  EXPECT_EQ(a100->model.num_layers, 3);
  EXPECT_EQ(a100->model.d_model, 512);
  EXPECT_EQ(a100->emb.num_items, 10'000'000);
  // DLRMv3-style KV: 3 layers x 4 heads x (128 + 128) x 2 bytes = 6 KiB per token.
  EXPECT_EQ(KvBlockBytes(a100->model, a100->kv) / a100->kv.tokens_per_block, 6 << 10);
}

TEST(Config, SettingsApplyToTheTextAsIfItSaidSo) {
  const std::string text = "control:\n  policy: heuristic\n  step: 0.1\npool:\n  r_max: 0.9\n";
  absl::StatusOr<std::string> set =
      ApplySettings(text, {"control.step=0.2", "control.policy=predictive", "simulator.num_nodes=3",
                           "simulator.sweep_controllers=[marginal, oracle]", "control.step=0.25"});
  ASSERT_TRUE(set.ok()) << set.status();
  absl::StatusOr<Config> c = ParseConfig(*set, "set");
  ASSERT_TRUE(c.ok()) << c.status() << "\n" << *set;
  EXPECT_EQ(c->control.policy, "predictive");
  EXPECT_DOUBLE_EQ(c->control.step, 0.25) << "settings apply in order";
  EXPECT_DOUBLE_EQ(c->pool.r_max, 0.9) << "the rest of the text stays";
  EXPECT_EQ(c->simulator.num_nodes, 3) << "a section the text lacks is made";
  EXPECT_EQ(c->simulator.sweep_controllers, (std::vector<std::string>{"marginal", "oracle"}));
  EXPECT_EQ(*ApplySettings(text, {}), text);
  ASSERT_TRUE(ApplySettings("", {"pool.r_min=0.2"}).ok()) << "empty text";

  // Malformed settings are named; a bad key or value is named by the parse that follows.
  for (const auto& [setting, message] :
       {std::pair<std::string, std::string>{"control", "expected section.key=value"},
        {"=1", "expected section.key=value"},
        {"control..step=1", "empty name"},
        {"control.policy.x=1", "'control.policy' is not a section"},
        {"control.step=[1", "not YAML"}}) {
    const absl::Status status = ApplySettings(text, {setting}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << setting;
    EXPECT_THAT(std::string(status.message()), HasSubstr(message)) << setting;
    EXPECT_THAT(std::string(status.message()), HasSubstr(setting)) << setting;
  }
  ExpectError(*ApplySettings(text, {"control.stepp=0.1"}), "unknown key 'control.stepp'");
  ExpectError(*ApplySettings(text, {"control.step=2"}), "control.step");
}

TEST(Config, MissingFileIsNotFound) {
  EXPECT_EQ(LoadConfigFile("/nonexistent/helm.yaml").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace helm::config
