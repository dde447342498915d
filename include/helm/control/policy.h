// Layer 1 of the learned controller (issue 13, DESIGN.md §4): the frozen base policy, a small MLP
// trained offline (helm-train, LibTorch) and run here by hand-written C++: the serving binaries
// never link LibTorch.
//
// Policy file (JSON, format "helm-policy-v1"):
//   {"format": "helm-policy-v1", "features": 19,    // reads features 0..N-1 (features.h)
//    "actions": [-0.10, -0.05, -0.02, 0, 0.02, 0.05, 0.10],      // split changes, one per output
//    "hidden_activation": "tanh",
//    "layers": [{"weight": [[...in...] x out], "bias": [out]}, ...]}   // torch.nn.Linear layout
// The last layer's outputs are the actions' logits; the decision is their argmax (the frozen
// policy acts greedily). Errors name the file and the field.
//
// PolicyController wraps it with the safety rules every policy obeys, whatever it outputs
// (safety.h: one move in flight, control.max_move per window, [r_min, r_max], no reversal within
// control.hold_windows windows).
//
// Thread-compatible (Forward uses internal scratch buffers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "helm/control/features.h"
#include "helm/control/options.h"
#include "helm/control/safety.h"
#include "helm/control/split_controller.h"

namespace helm::control {

class Mlp {
 public:
  struct Layer {
    int in = 0, out = 0;
    std::vector<float> weight;  // [out][in], row-major
    std::vector<float> bias;    // [out]
  };

  // Seeded uniform(-1/sqrt(in), 1/sqrt(in)) weights, like torch.nn.Linear's default init; `sizes`
  // = {inputs, hidden..., outputs}.
  static Mlp Random(const std::vector<int>& sizes, uint64_t seed);
  explicit Mlp(std::vector<Layer> layers);

  // out[outputs()] = last(tanh(...tanh(first(in)))).
  void Forward(const float* in, float* out) const;
  // The activation Forward uses: tanh within a few float ulp (a rational fit; policy.cc).
  static float Tanh(float x);
  int inputs() const { return layers_.front().in; }
  int outputs() const { return layers_.back().out; }
  const std::vector<Layer>& layers() const { return layers_; }

 private:
  std::vector<Layer> layers_;
  // A layer's outputs rounded up to a whole vector register of 4 floats (Forward).
  static int Padded(int out) { return (out + 3) / 4 * 4; }
  std::vector<std::vector<float>> transposed_;   // each layer's weight, [in][Padded(out)]
  std::vector<std::vector<float>> padded_bias_;  // each layer's bias, zeros past `out`
  mutable std::vector<float> a_, b_;
};

struct Policy {
  Mlp mlp;
  std::vector<double> actions;
};

// A policy path "builtin:helm-base-vN" names a base policy trained by helm-train and committed as
// configs/policies/helm-base-vN.json (its manifest beside it), compiled into the serving binaries
// so that a node needs no file: v1 (PPO, features 0-15), v2 (kickstarted by the marginal rule,
// features 0-18), v3 (kickstarted by the predictive rule, features 0-20) and v4 (the same with
// DAgger; README "Training the base policy").
inline constexpr absl::string_view kBuiltinPrefix = "builtin:";

// Parses / reads a policy file (above), or a builtin policy. InvalidArgument naming the source and
// the field; NotFound when the file cannot be read.
absl::StatusOr<Policy> ParsePolicy(absl::string_view json, absl::string_view source);
absl::StatusOr<Policy> LoadPolicy(const std::string& path);
std::string PolicyToJson(const Policy& policy);

class PolicyController final : public SplitController {
 public:
  PolicyController(Policy policy, const FeatureScales& scales, const ControlOptions& options,
                   double r_min, double r_max);
  double Decide(const serve::StatsWindow& window) override;
  std::string name() const override { return "helm-base"; }
  int64_t reversals() const override { return gate_.reversals(); }
  int64_t refused_reversals() const { return gate_.refused_reversals(); }
  const Features& last_features() const { return features_; }
  int last_action() const { return action_; }

 private:
  Policy policy_;
  FeatureExtractor extractor_;
  SafetyGate gate_;
  Features features_{};
  std::vector<float> logits_;
  int action_ = -1;
};

}  // namespace helm::control
