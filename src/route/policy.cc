#include "helm/route/policy.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "helm/common/hash.h"

namespace helm::route {
namespace {

// Per-node scratch of one decision: on the stack up to 1024 nodes.
using PerNode = absl::InlinedVector<int32_t, 1024>;

NodeSet Candidates(const ClusterState& cluster, const NodeSet& exclude) {
  NodeSet candidates = cluster.Routable();
  candidates.Subtract(exclude);
  return candidates;
}

int HighestRendezvous(int64_t user_id, const NodeSet& candidates) {
  int best = -1;
  uint64_t best_weight = 0;
  candidates.ForEach([&](int n) {
    const uint64_t w = RendezvousWeight(user_id, n);
    if (best < 0 || w > best_weight) {
      best = n;
      best_weight = w;
    }
  });
  return best;
}

// A node's share of new users never drops below this much of an unpressured node's, so a cluster
// whose nodes are all under full pressure still spreads them.
constexpr double kMinHeadroom = 0.05;

class HelmPolicy final : public Policy {
 public:
  explicit HelmPolicy(const RouterOptions& options)
      : w_kv_(options.w_kv),
        kv_min_share_(options.kv_min_share),
        w_emb_(options.w_emb),
        w_load_(options.w_load),
        w_mem_(options.w_mem),
        use_pressure_(options.w_mem > 0),
        mem_knee_(options.mem_knee),
        inv_knee_span_(1.0 / (1.0 - options.mem_knee)),
        mem_eviction_weight_(options.mem_eviction_weight),
        placement_slack_(options.placement_slack),
        emb_sample_(options.emb_sample) {}

  RouteDecision Decide(const RouteRequest& request, const ClusterState& cluster,
                       const NodeSet& exclude) const override {
    const NodeSet candidates = Candidates(cluster, exclude);
    if (candidates.Empty()) return {};
    PerNode tokens(candidates.capacity());
    cluster.ReusableTokens(request.user_id, request.history_length, request.history_start,
                           absl::MakeSpan(tokens));

    // EMB locality from an evenly spaced sample of the candidates.
    PerNode emb_hits(candidates.capacity(), 0);
    int64_t sample[1024];
    int sampled = 0;
    if (w_emb_ > 0 && emb_sample_ > 0 && request.emb_ids != nullptr) {
      sampled = std::min(request.num_emb_ids, emb_sample_);
      if (sampled > 0) {
        cluster.EmbCounts(request.emb_ids, sampled, candidates, absl::MakeSpan(emb_hits));
      }
    } else if (w_emb_ > 0 && emb_sample_ > 0 && request.num_candidates > 0) {
      ForEachEmbSampledCandidate(request.num_candidates, emb_sample_,
                                 [&](int32_t i) { sample[sampled++] = request.candidate_ids[i]; });
      cluster.EmbCounts(sample, sampled, candidates, absl::MakeSpan(emb_hits));
    }

    const double inv_history = request.history_length > 0 ? 1.0 / request.history_length : 0.0;
    const double inv_sampled = sampled > 0 ? 1.0 / sampled : 0.0;
    // Raw pointers: every candidate is below candidates.capacity(), their size.
    const int32_t* const kv_tokens = tokens.data();
    const int32_t* const emb_counts = emb_hits.data();
    auto score_of = [&](int n, double pressure) {
      const double kv = kv_tokens[n] * inv_history;
      const double emb = emb_counts[n] * inv_sampled;
      return w_kv_ * kv + w_emb_ * emb - w_load_ * cluster.Load(n) - w_mem_ * (1.0 - kv) * pressure;
    };
    int best = -1;
    double best_score = 0;
    uint64_t best_tiebreak = 0;
    auto consider = [&](int n, double score) {
      if (best >= 0 && score < best_score) return;
      const uint64_t tiebreak = RendezvousWeight(request.user_id, n);
      if (best < 0 || score > best_score || tiebreak > best_tiebreak) {
        best = n;
        best_score = score;
        best_tiebreak = tiebreak;
      }
    };

    // One pass scores every candidate and, should the user turn out to have K/V on none that
    // binds it, sums what the placement bound needs; a returning user needs no other.
    const double binding_tokens =
        std::max(1.0, kv_min_share_ * (static_cast<double>(request.history_length) +
                                       static_cast<double>(std::max(0, request.num_candidates))));
    bool resident = false;
    int64_t placed_total = 0;
    double headroom_total = 0;
    candidates.ForEach([&](int n) {
      const double pressure = Pressure(cluster, n);
      resident |= kv_tokens[n] >= binding_tokens;
      placed_total += cluster.recent_placements(n);
      headroom_total += Headroom(pressure);
      consider(n, score_of(n, pressure));
    });
    if (resident) return {.node = best};

    // A new user: the best score among the nodes within their bound,
    // ceil(bound_scale x headroom(n)); should a race (concurrent placements since the first pass)
    // leave none, the node furthest below its share.
    const double bound_scale =
        (1.0 + placement_slack_) * static_cast<double>(placed_total + 1) / headroom_total;
    best = -1;
    int emptiest = -1;
    double emptiest_fill = 0;
    candidates.ForEach([&](int n) {
      const double pressure = Pressure(cluster, n);
      const double headroom = Headroom(pressure);
      const int32_t placed = cluster.recent_placements(n);
      const double fill = (placed + 1) / headroom;
      if (emptiest < 0 || fill < emptiest_fill) {
        emptiest = n;
        emptiest_fill = fill;
      }
      if (placed + 1 > std::ceil(bound_scale * headroom)) return;
      consider(n, score_of(n, pressure));
    });
    return {.node = best >= 0 ? best : emptiest, .new_user = true};
  }
  const char* name() const override { return "helm"; }

 private:
  // pressure(n) in [0, 1] (policy.h); 0 when w_mem is 0, which turns memory pressure off in the
  // placement bound too (equal shares).
  double Pressure(const ClusterState& cluster, int n) const {
    if (!use_pressure_) return 0.0;
    const double over = cluster.kv_occupancy(n) - mem_knee_;
    // Both terms are >= 0: ClusterState keeps reported values in range.
    return std::min(1.0, (over > 0 ? over * inv_knee_span_ : 0.0) +
                             mem_eviction_weight_ * cluster.kv_eviction_rate(n));
  }
  static double Headroom(double pressure) { return std::max(kMinHeadroom, 1.0 - pressure); }

  double w_kv_, kv_min_share_, w_emb_, w_load_, w_mem_;
  bool use_pressure_;
  double mem_knee_, inv_knee_span_, mem_eviction_weight_;
  double placement_slack_;
  int emb_sample_;
};

class RoundRobinPolicy final : public Policy {
 public:
  RouteDecision Decide(const RouteRequest&, const ClusterState& cluster,
                       const NodeSet& exclude) const override {
    const NodeSet candidates = Candidates(cluster, exclude);
    const int count = candidates.Count();
    if (count == 0) return {};
    // The k-th routable node, so that a node out of rotation does not double its neighbour's share.
    return {.node = candidates.Nth(static_cast<int>(next_.fetch_add(1, std::memory_order_relaxed) %
                                                    static_cast<uint64_t>(count)))};
  }
  const char* name() const override { return "round_robin"; }

 private:
  mutable std::atomic<uint64_t> next_{0};
};

class LeastLoadedPolicy final : public Policy {
 public:
  RouteDecision Decide(const RouteRequest& request, const ClusterState& cluster,
                       const NodeSet& exclude) const override {
    int best = -1;
    double best_load = 0;
    uint64_t best_tiebreak = 0;
    Candidates(cluster, exclude).ForEach([&](int n) {
      const double load = cluster.Load(n);
      if (best >= 0 && load > best_load) return;
      // Ties rotate with the user so an idle cluster still spreads requests.
      const uint64_t tiebreak = RendezvousWeight(request.user_id, n);
      if (best < 0 || load < best_load || tiebreak > best_tiebreak) {
        best = n;
        best_load = load;
        best_tiebreak = tiebreak;
      }
    });
    return {.node = best};
  }
  const char* name() const override { return "least_loaded"; }
};

class ConsistentHashPolicy final : public Policy {
 public:
  RouteDecision Decide(const RouteRequest& request, const ClusterState& cluster,
                       const NodeSet& exclude) const override {
    return {.node = HighestRendezvous(request.user_id, Candidates(cluster, exclude))};
  }
  const char* name() const override { return "consistent_hash"; }
};

class KvAffinityPolicy final : public Policy {
 public:
  RouteDecision Decide(const RouteRequest& request, const ClusterState& cluster,
                       const NodeSet& exclude) const override {
    const NodeSet candidates = Candidates(cluster, exclude);
    if (candidates.Empty()) return {};
    PerNode tokens(candidates.capacity());
    cluster.ReusableTokens(request.user_id, request.history_length, request.history_start,
                           absl::MakeSpan(tokens));
    int best = -1;
    candidates.ForEach([&](int n) {
      if (tokens[n] > 0 && (best < 0 || tokens[n] > tokens[best])) best = n;
    });
    if (best >= 0) return {.node = best};
    return {.node = HighestRendezvous(request.user_id, candidates), .new_user = true};
  }
  const char* name() const override { return "kv_affinity"; }
};

}  // namespace

uint64_t RendezvousWeight(int64_t user_id, int node) {
  return SplitMix64(static_cast<uint64_t>(user_id) * 0x100000001b3ull +
                    static_cast<uint64_t>(node));
}

absl::StatusOr<std::unique_ptr<Policy>> CreatePolicy(const RouterOptions& options) {
  if (options.policy == "helm") return std::make_unique<HelmPolicy>(options);
  if (options.policy == "round_robin") return std::make_unique<RoundRobinPolicy>();
  if (options.policy == "least_loaded") return std::make_unique<LeastLoadedPolicy>();
  if (options.policy == "consistent_hash") return std::make_unique<ConsistentHashPolicy>();
  if (options.policy == "kv_affinity") return std::make_unique<KvAffinityPolicy>();
  return absl::InvalidArgumentError(
      absl::StrCat("router.policy: unknown policy '", options.policy, "'"));
}

}  // namespace helm::route
