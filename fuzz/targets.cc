#include "fuzz_targets.h"

namespace helm::fuzz {

absl::Span<const FuzzTarget> AllTargets() {
  static constexpr FuzzTarget kTargets[] = {
      {"rank_request", &FuzzRankRequest}, {"config", &FuzzConfig},
      {"safetensors", &FuzzSafetensors},  {"npy", &FuzzNpy},
      {"trace_csv", &FuzzTraceCsv},       {"node_state", &FuzzNodeState},
  };
  return kTargets;
}

}  // namespace helm::fuzz
