// helm-weights: writes a seeded random safetensors weights file for the model the config's
// model/emb/kv sections describe, then loads it back to check it. Exit status 0 on success, 1 on
// a write or check failure, 2 on a config or flag error.
#include <cstdio>
#include <string>

#include "apps/app.h"
#include "helm/model/model.h"
#include "helm/model/weights.h"

int main(int argc, char** argv) {
  CLI::App cli("helm-weights: write seeded random HSTU weights as a safetensors file");
  helm::app::CommonFlags flags;
  helm::app::AddCommonFlags(cli, flags);
  std::string out_path;
  int64_t seed = -1;
  cli.add_option("--out", out_path, "safetensors file to write")->required();
  cli.add_option("--seed", seed, "seed of the weights (default: the config's model.seed)");
  helm::app::ParseFlagsOrExit(cli, argc, argv);
  const helm::config::Config config = helm::app::LoadConfigOrExit(flags, "helm-weights");

  const absl::StatusOr<helm::model::ModelDims> dims =
      helm::model::DimsFromOptions(config.model, config.emb, config.kv);
  if (!dims.ok()) {
    std::fprintf(stderr, "helm-weights: %s\n", std::string(dims.status().message()).c_str());
    return 2;
  }
  const uint64_t used_seed = seed >= 0 ? static_cast<uint64_t>(seed) : config.model.seed;
  const auto weights = helm::model::Weights::Random(*dims, used_seed);
  if (absl::Status s = weights->Save(out_path); !s.ok()) {
    std::fprintf(stderr, "helm-weights: %s\n", s.ToString().c_str());
    return 1;
  }
  const auto loaded = helm::model::Weights::Load(out_path, *dims);
  if (!loaded.ok()) {
    std::fprintf(stderr, "helm-weights: written file does not load back: %s\n",
                 loaded.status().ToString().c_str());
    return 1;
  }
  int64_t values = 0;
  for (const auto& spec : (*loaded)->specs()) values += spec.elements();
  std::printf("wrote %s: %zu tensors, %lld values, seed %llu (layers %d, heads %d, D %d, emb %d)\n",
              out_path.c_str(), (*loaded)->specs().size(), static_cast<long long>(values),
              static_cast<unsigned long long>(used_seed), dims->num_layers, dims->num_heads,
              dims->d_model, dims->emb_dim);
  return 0;
}
