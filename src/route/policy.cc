#include "helm/route/policy.h"

#include <algorithm>
#include <atomic>
#include <bit>

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

class HelmPolicy final : public Policy {
 public:
  explicit HelmPolicy(const RouterOptions& options)
      : w_kv_(options.w_kv),
        w_emb_(options.w_emb),
        w_load_(options.w_load),
        emb_sample_(options.emb_sample) {}

  int Pick(const RouteRequest& request, const ClusterState& cluster,
           const NodeSet& exclude) const override {
    const NodeSet candidates = Candidates(cluster, exclude);
    if (candidates.Empty()) return -1;
    PerNode tokens(candidates.capacity());
    cluster.ReusableTokens(request.user_id, request.history_length, request.history_start,
                           absl::MakeSpan(tokens));

    // EMB locality from an evenly spaced sample of the candidates.
    PerNode emb_hits(candidates.capacity(), 0);
    int64_t sample[1024];
    int sampled = 0;
    if (w_emb_ > 0 && emb_sample_ > 0 && request.num_candidates > 0) {
      sampled = std::min(emb_sample_, request.num_candidates);
      for (int i = 0; i < sampled; ++i) {
        sample[i] =
            request.candidate_ids[static_cast<int64_t>(i) * request.num_candidates / sampled];
      }
      cluster.EmbCounts(sample, sampled, candidates, absl::MakeSpan(emb_hits));
    }

    const double inv_history = request.history_length > 0 ? 1.0 / request.history_length : 0.0;
    const double inv_sampled = sampled > 0 ? 1.0 / sampled : 0.0;
    int best = -1;
    double best_score = 0;
    uint64_t best_tiebreak = 0;
    // Raw pointers: every candidate is below candidates.capacity(), their size.
    const int32_t* const kv_tokens = tokens.data();
    const int32_t* const emb_counts = emb_hits.data();
    candidates.ForEach([&](int n) {
      const double kv = kv_tokens[n] * inv_history;
      const double emb = emb_counts[n] * inv_sampled;
      const double score = w_kv_ * kv + w_emb_ * emb - w_load_ * cluster.Load(n);
      if (best >= 0 && score < best_score) return;
      const uint64_t tiebreak = RendezvousWeight(request.user_id, n);
      if (best < 0 || score > best_score || tiebreak > best_tiebreak) {
        best = n;
        best_score = score;
        best_tiebreak = tiebreak;
      }
    });
    return best;
  }
  const char* name() const override { return "helm"; }

 private:
  double w_kv_, w_emb_, w_load_;
  int emb_sample_;
};

class RoundRobinPolicy final : public Policy {
 public:
  int Pick(const RouteRequest&, const ClusterState& cluster,
           const NodeSet& exclude) const override {
    const NodeSet candidates = Candidates(cluster, exclude);
    const int count = candidates.Count();
    if (count == 0) return -1;
    // The k-th routable node, so that a node out of rotation does not double its neighbour's share.
    return candidates.Nth(static_cast<int>(next_.fetch_add(1, std::memory_order_relaxed) %
                                           static_cast<uint64_t>(count)));
  }
  const char* name() const override { return "round_robin"; }

 private:
  mutable std::atomic<uint64_t> next_{0};
};

class LeastLoadedPolicy final : public Policy {
 public:
  int Pick(const RouteRequest& request, const ClusterState& cluster,
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
    return best;
  }
  const char* name() const override { return "least_loaded"; }
};

class ConsistentHashPolicy final : public Policy {
 public:
  int Pick(const RouteRequest& request, const ClusterState& cluster,
           const NodeSet& exclude) const override {
    return HighestRendezvous(request.user_id, Candidates(cluster, exclude));
  }
  const char* name() const override { return "consistent_hash"; }
};

class KvAffinityPolicy final : public Policy {
 public:
  int Pick(const RouteRequest& request, const ClusterState& cluster,
           const NodeSet& exclude) const override {
    const NodeSet candidates = Candidates(cluster, exclude);
    if (candidates.Empty()) return -1;
    PerNode tokens(candidates.capacity());
    cluster.ReusableTokens(request.user_id, request.history_length, request.history_start,
                           absl::MakeSpan(tokens));
    int best = -1;
    candidates.ForEach([&](int n) {
      if (tokens[n] > 0 && (best < 0 || tokens[n] > tokens[best])) best = n;
    });
    return best >= 0 ? best : HighestRendezvous(request.user_id, candidates);
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
