// helm-fuzz-seeds <dir>: writes the binary seed inputs of the loader targets into
// <dir>/<target>/ (a valid safetensors file of fuzz_model.h's model, valid .npy tables of each
// dtype, and a RankRequest and NodeState stream of realistic shape). The committed corpus under
// fuzz/corpus/ came from it; text seeds (YAML, CSV) are written by hand.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_model.h"
#include "helm/emb/host_table.h"
#include "helm/model/weights.h"
#include "helm/v1/node.pb.h"
#include "helm/v1/recommender.pb.h"

namespace fs = std::filesystem;

namespace {

bool WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: helm-fuzz-seeds <dir>\n");
    return 2;
  }
  const fs::path root = argv[1];
  for (const char* t : {"safetensors", "npy", "rank_request", "node_state"}) {
    fs::create_directories(root / t);
  }
  const auto weights = helm::model::Weights::Random(helm::fuzz::FuzzModelDims(), 1);
  if (absl::Status s = weights->Save((root / "safetensors" / "valid.safetensors").string());
      !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::vector<uint8_t> table(helm::fuzz::kFuzzNpyRows * helm::fuzz::kFuzzNpyCols * 4);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<uint8_t>(i * 37);
  for (const auto& [dtype, name] :
       {std::pair{helm::Dtype::kFp32, "fp32.npy"}, std::pair{helm::Dtype::kFp16, "fp16.npy"},
        std::pair{helm::Dtype::kBf16, "bf16.npy"}}) {
    if (absl::Status s =
            helm::emb::WriteNpy((root / "npy" / name).string(), dtype, helm::fuzz::kFuzzNpyRows,
                                helm::fuzz::kFuzzNpyCols, table.data());
        !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }

  helm::v1::RankRequest request;
  request.set_request_id("r1");
  request.set_user_id(42);
  for (int i = 0; i < 6; ++i) {
    request.add_history_item_ids(10 * i + 1);
    request.add_history_actions(i % 4);
    request.add_history_timestamps_ms(1000 * i);
  }
  for (int i = 0; i < 5; ++i) request.add_candidate_item_ids(500 + i);
  request.set_top_k(3);
  if (!WriteFile(root / "rank_request" / "valid.bin", request.SerializeAsString())) return 1;

  // Two nodes: a full snapshot with load, residency and an EMB summary, then a delta.
  std::string stream(1, static_cast<char>(1));  // header: 2 nodes
  auto append = [&](int node, const helm::v1::NodeState& state) {
    const std::string bytes = state.SerializeAsString();
    stream.push_back(static_cast<char>(node));
    stream.push_back(static_cast<char>(bytes.size() & 0xff));
    stream.push_back(static_cast<char>(bytes.size() >> 8));
    stream += bytes;
  };
  for (int node = 0; node < 2; ++node) {
    helm::v1::NodeState full;
    full.set_node_id("node-" + std::to_string(node));
    full.set_seq(1);
    full.set_full_snapshot(true);
    full.mutable_load()->set_queue_depth(2);
    full.mutable_load()->set_in_flight(3);
    full.mutable_load()->set_capacity(8);
    full.mutable_load()->set_workers(2);
    full.set_committed_split(0.5);
    full.set_target_split(0.5);
    full.set_kv_resident_users(2);
    for (int u = 0; u < 2; ++u) {
      helm::v1::KvResidencyEvent* e = full.add_kv_events();
      e->set_user_id(42 + u);
      e->set_cached_tokens(16 * (u + 1));
      e->set_history_start(77);
    }
    helm::v1::EmbSummary* summary = full.mutable_emb_summary();
    summary->set_bits(std::string(64, static_cast<char>(node == 0 ? 0x11 : 0x82)));
    summary->set_num_hashes(3);
    summary->set_seed(9);
    summary->set_resident_rows(10);
    append(node, full);
  }
  helm::v1::NodeState delta;
  delta.set_seq(2);
  helm::v1::KvResidencyEvent* gone = delta.add_kv_events();
  gone->set_user_id(42);
  gone->set_cached_tokens(0);
  append(1, delta);
  if (!WriteFile(root / "node_state" / "two_nodes.bin", stream)) return 1;
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
