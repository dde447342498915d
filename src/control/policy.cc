#include "helm/control/policy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace helm::control {

namespace {

// tanh as a 13/6-degree odd/even rational minimax fit on [-9, 9] (beyond it tanh is +-1 in float):
// within a few float ulp of std::tanh, and branch-free. The coefficients are the published ones of
// Eigen's generic_fast_tanh_float. glibc's tanhf, one call per unit, took most of a decision
// (~30 ns x 128 hidden units). A template so that Forward runs it on four lanes at once with the
// very same operations as the scalar Mlp::Tanh, lane by lane.
template <typename T>
inline T FastTanh(T v) {
  T x = v < 9.0f ? v : T{} + 9.0f;
  x = x > -9.0f ? x : T{} - 9.0f;
  const T x2 = x * x;
  T p = T{} + -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  T q = T{} + 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

// Four floats in one SSE2 (x86-64's baseline) or NEON register: GCC's and Clang's vector
// extension, so that Forward needs no intrinsics and no -march. Each lane computes what the scalar
// code would, in the same order, so the outputs are the same bits as scalar code. (An AVX2 clone of
// the layer, 8 lanes, timed no faster on the 2-core VM: 594 against 610 ns a forward.)
typedef float Lanes __attribute__((vector_size(16)));
constexpr int kLanes = 4;

}  // namespace

float Mlp::Tanh(float x) { return FastTanh(x); }

Mlp Mlp::Random(const std::vector<int>& sizes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Layer> layers;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    Layer l;
    l.in = sizes[i];
    l.out = sizes[i + 1];
    const float bound = 1.0f / std::sqrt(static_cast<float>(l.in));
    std::uniform_real_distribution<float> u(-bound, bound);
    l.weight.resize(static_cast<size_t>(l.in) * l.out);
    for (float& w : l.weight) w = u(rng);
    l.bias.resize(l.out);
    for (float& b : l.bias) b = u(rng);
    layers.push_back(std::move(l));
  }
  return Mlp(std::move(layers));
}

Mlp::Mlp(std::vector<Layer> layers) : layers_(std::move(layers)) {
  size_t widest = 0;
  for (const Layer& l : layers_) {
    const int padded = Padded(l.out);
    widest = std::max<size_t>({widest, size_t(l.in), size_t(padded)});
    // [in][padded out], zeros past `out`: the forward adds one input's column to a block of
    // outputs at a time, held in vector registers, without reordering any output's sum.
    std::vector<float> t(size_t(l.in) * padded, 0.0f);
    for (int o = 0; o < l.out; ++o) {
      for (int k = 0; k < l.in; ++k) t[size_t(k) * padded + o] = l.weight[size_t(o) * l.in + k];
    }
    transposed_.push_back(std::move(t));
    std::vector<float> b(padded, 0.0f);
    std::copy(l.bias.begin(), l.bias.end(), b.begin());
    padded_bias_.push_back(std::move(b));
  }
  a_.resize(widest);
  b_.resize(widest);
}

namespace {

// V * kLanes outputs of one layer: bias first, then each input's column, in order, then tanh
// unless it is the last layer. V independent accumulators hide the add's latency.
template <int V>
inline void Block(const float* __restrict x, int in, const float* __restrict w, int stride,
                  const float* bias, bool activate, float* __restrict y) {
  Lanes acc[V];
  for (int v = 0; v < V; ++v) std::memcpy(&acc[v], bias + v * kLanes, sizeof(Lanes));
  for (int k = 0; k < in; ++k) {
    const Lanes xk = Lanes{} + x[k];
    const float* col = w + static_cast<size_t>(k) * stride;
    for (int v = 0; v < V; ++v) {
      Lanes c;
      std::memcpy(&c, col + v * kLanes, sizeof(Lanes));
      acc[v] += c * xk;
    }
  }
  for (int v = 0; v < V; ++v) {
    if (activate) acc[v] = FastTanh(acc[v]);
    std::memcpy(y + v * kLanes, &acc[v], sizeof(Lanes));
  }
}

// One layer, y[padded] = (tanh)(bias + x W), in blocks of 32, then 16, 8 and 4 outputs: 8
// registers of accumulators where the layer is wide enough.
void LayerForward(const float* __restrict x, int in, const float* __restrict w, int padded,
                  const float* bias, bool activate, float* __restrict y) {
  int o = 0;
  for (; o + 8 * kLanes <= padded; o += 8 * kLanes) {
    Block<8>(x, in, w + o, padded, bias + o, activate, y + o);
  }
  if (o + 4 * kLanes <= padded) {
    Block<4>(x, in, w + o, padded, bias + o, activate, y + o);
    o += 4 * kLanes;
  }
  if (o + 2 * kLanes <= padded) {
    Block<2>(x, in, w + o, padded, bias + o, activate, y + o);
    o += 2 * kLanes;
  }
  if (o < padded) Block<1>(x, in, w + o, padded, bias + o, activate, y + o);
}

}  // namespace

void Mlp::Forward(const float* in, float* out) const {
  const float* x = in;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const bool last = i + 1 == layers_.size();
    const int padded = Padded(l.out);
    float* __restrict y = x == a_.data() ? b_.data() : a_.data();
    LayerForward(x, l.in, transposed_[i].data(), padded, padded_bias_[i].data(), !last, y);
    if (last) std::copy(y, y + l.out, out);
    x = y;
  }
}

absl::StatusOr<Policy> ParsePolicy(absl::string_view text, absl::string_view source) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("policy ", source, ": ", what));
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (j.value("format", "") != "helm-policy-v1") return bad("format: must be \"helm-policy-v1\"");
  if (!j.contains("features") || !j["features"].is_number_integer() ||
      j["features"].get<int>() < 1 || j["features"].get<int>() > kNumFeatures) {
    return bad(
        absl::StrCat("features: must be 1 to ", kNumFeatures, " (the first N of features.h)"));
  }
  if (j.value("hidden_activation", "tanh") != "tanh") return bad("hidden_activation: only tanh");
  if (!j.contains("actions") || !j["actions"].is_array() || j["actions"].empty()) {
    return bad("actions: must be a non-empty array of split changes");
  }
  Policy p{Mlp({}), {}};
  for (const auto& a : j["actions"]) {
    if (!a.is_number() || std::abs(a.get<double>()) > 1) {
      return bad("actions: each must be a number in [-1, 1]");
    }
    p.actions.push_back(a.get<double>());
  }
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty()) {
    return bad("layers: must be a non-empty array");
  }
  std::vector<Mlp::Layer> layers;
  int in = j["features"].get<int>();
  for (size_t i = 0; i < j["layers"].size(); ++i) {
    const auto& lj = j["layers"][i];
    const std::string at = absl::StrCat("layers[", i, "]");
    if (!lj.is_object() || !lj.contains("weight") || !lj["weight"].is_array() ||
        !lj.contains("bias") || !lj["bias"].is_array()) {
      return bad(at + ": needs weight [out][in] and bias [out]");
    }
    Mlp::Layer l;
    l.in = in;
    l.out = static_cast<int>(lj["weight"].size());
    if (l.out == 0 || static_cast<int>(lj["bias"].size()) != l.out) {
      return bad(at + ".bias: must have one entry per weight row");
    }
    for (const auto& row : lj["weight"]) {
      if (!row.is_array() || static_cast<int>(row.size()) != in) {
        return bad(absl::StrCat(at, ".weight: every row must have ", in, " numbers"));
      }
      for (const auto& v : row) {
        if (!v.is_number()) return bad(at + ".weight: numbers only");
        l.weight.push_back(v.get<float>());
      }
    }
    for (const auto& v : lj["bias"]) {
      if (!v.is_number()) return bad(at + ".bias: numbers only");
      l.bias.push_back(v.get<float>());
    }
    in = l.out;
    layers.push_back(std::move(l));
  }
  if (in != static_cast<int>(p.actions.size())) {
    return bad(absl::StrCat("layers: the last layer has ", in, " outputs for ", p.actions.size(),
                            " actions"));
  }
  p.mlp = Mlp(std::move(layers));
  return p;
}

extern const char* const kBuiltinHelmBaseV1;  // builtin_policy_v1.cc, generated
extern const char* const kBuiltinHelmBaseV2;  // builtin_policy_v2.cc, generated
extern const char* const kBuiltinHelmBaseV3;  // builtin_policy_v3.cc, generated
extern const char* const kBuiltinHelmBaseV4;  // builtin_policy_v4.cc, generated

absl::StatusOr<Policy> LoadPolicy(const std::string& path) {
  if (absl::StartsWith(path, kBuiltinPrefix)) {
    const std::string name = path.substr(kBuiltinPrefix.size());
    if (name == "helm-base-v1") return ParsePolicy(kBuiltinHelmBaseV1, path);
    if (name == "helm-base-v2") return ParsePolicy(kBuiltinHelmBaseV2, path);
    if (name == "helm-base-v3") return ParsePolicy(kBuiltinHelmBaseV3, path);
    if (name == "helm-base-v4") return ParsePolicy(kBuiltinHelmBaseV4, path);
    return absl::NotFoundError(
        absl::StrCat("policy ", path,
                     ": no such builtin policy (known: builtin:helm-base-v1, "
                     "builtin:helm-base-v2, builtin:helm-base-v3, "
                     "builtin:helm-base-v4)"));
  }
  std::ifstream f(path);
  if (!f) return absl::NotFoundError(absl::StrCat("policy ", path, ": cannot open the file"));
  std::stringstream text;
  text << f.rdbuf();
  return ParsePolicy(text.str(), path);
}

std::string PolicyToJson(const Policy& p) {
  nlohmann::json j;
  j["format"] = "helm-policy-v1";
  j["features"] = p.mlp.inputs();
  j["hidden_activation"] = "tanh";
  j["actions"] = p.actions;
  j["layers"] = nlohmann::json::array();
  for (const Mlp::Layer& l : p.mlp.layers()) {
    nlohmann::json lj;
    lj["weight"] = nlohmann::json::array();
    for (int o = 0; o < l.out; ++o) {
      lj["weight"].push_back(std::vector<float>(l.weight.begin() + size_t(o) * l.in,
                                                l.weight.begin() + size_t(o + 1) * l.in));
    }
    lj["bias"] = l.bias;
    j["layers"].push_back(std::move(lj));
  }
  return j.dump();
}

PolicyController::PolicyController(Policy policy, const FeatureScales& scales,
                                   const ControlOptions& options, double r_min, double r_max)
    : policy_(std::move(policy)),
      extractor_(FeatureExtractor::For(policy_.mlp.inputs(), scales, options, r_min, r_max)),
      gate_(options.max_move, options.hold_windows, r_min, r_max),
      logits_(policy_.actions.size()) {}

double PolicyController::Decide(const serve::StatsWindow& w) {
  features_ = extractor_.Extract(w);
  if (SafetyGate::MoveInFlight(w)) return gate_.Apply(w, 0);
  policy_.mlp.Forward(features_.data(), logits_.data());
  action_ = static_cast<int>(std::max_element(logits_.begin(), logits_.end()) - logits_.begin());
  return gate_.Apply(w, policy_.actions[action_]);
}

}  // namespace helm::control
