// Two surfaces on one stream (WorkloadOptions::mix): each surface is a synthetic generator of its
// own, run at the most its weight can ask of it, and thinned request by request to its rate at
// that instant (Lewis and Shedler's thinning of a Poisson process). The two thinned streams are
// merged by arrival time.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <utility>

#include "absl/strings/str_cat.h"
#include "helm/workload/generator.h"
#include "helm/workload/random.h"
#include "workload/generators.h"

namespace helm::workload::internal {
namespace {

class MixGenerator final : public Generator {
 public:
  MixGenerator(const SurfaceMix& mix, uint64_t seed, std::unique_ptr<Generator> first,
               std::unique_ptr<Generator> second, int64_t second_user_offset)
      : mix_(mix),
        rng_(seed ^ 0x6d69785f73686172ULL),
        second_user_offset_(second_user_offset),
        period_us_(mix.period_s > 0 ? mix.period_s * 1e6
                                    : static_cast<double>(first->duration_us())) {
    streams_[0] = std::move(first);
    streams_[1] = std::move(second);
  }

  bool Next(Request* request) override {
    for (;;) {
      for (int s = 0; s < 2; ++s) {
        if (!pending_[s] && !done_[s]) {
          pending_[s] = streams_[s]->Next(&next_[s]);
          done_[s] = !pending_[s];
        }
      }
      // The earlier of the two (the first surface on a tie); its spans stay valid until that
      // surface's generator is asked for its next request.
      int s = -1;
      if (pending_[0]) s = 0;
      if (pending_[1] && (s < 0 || next_[1].arrival_us < next_[0].arrival_us)) s = 1;
      if (s < 0) return false;
      pending_[s] = false;
      // A thinned request's user was busy on the other surface: its next request carries the
      // events it appended meanwhile.
      if (!rng_.Bernoulli(AcceptProbability(s, next_[s].arrival_us))) continue;
      *request = next_[s];
      request->surface = s;
      if (s == 1) request->user_id += second_user_offset_;
      return true;
    }
  }

  const std::vector<Phase>& phases() const override { return streams_[0]->phases(); }

  double RatePerS(int64_t t_us) const override {
    return streams_[0]->RatePerS(t_us) * AcceptProbability(0, t_us) +
           streams_[1]->RatePerS(t_us) * AcceptProbability(1, t_us);
  }

  int64_t num_items() const override {
    return std::max(streams_[0]->num_items(), streams_[1]->num_items());
  }
  int64_t num_users() const override { return streams_[0]->num_users(); }
  int32_t max_history() const override {
    return std::max(streams_[0]->max_history(), streams_[1]->max_history());
  }
  const DatasetProfile& profile() const override { return streams_[0]->profile(); }

 private:
  double Share(int64_t t_us) const {
    const double phase = 2 * std::numbers::pi * static_cast<double>(t_us) / period_us_;
    return mix_.share_min + (mix_.share_max - mix_.share_min) * 0.5 * (1 - std::cos(phase));
  }

  // The first surface runs at rate x (1 - share_min), the second at rate x rate_ratio x share_max.
  double AcceptProbability(int surface, int64_t t_us) const {
    const double share = Share(t_us);
    return surface == 0 ? (1 - share) / (1 - mix_.share_min) : share / mix_.share_max;
  }

  const SurfaceMix mix_;
  Rng rng_;
  const int64_t second_user_offset_;
  const double period_us_;
  std::unique_ptr<Generator> streams_[2];
  Request next_[2];
  bool pending_[2] = {false, false};
  bool done_[2] = {false, false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Generator>> NewMixGenerator(const WorkloadOptions& options) {
  const SurfaceMix& mix = options.mix;
  WorkloadOptions first = options;
  first.mix = SurfaceMix();
  first.rate_per_s = options.rate_per_s * (1 - mix.share_min);
  WorkloadOptions second = first;
  second.rate_per_s = options.rate_per_s * mix.rate_ratio * mix.share_max;
  second.seed = options.seed ^ 0x5375726661636532ULL;
  if (!mix.profile.empty()) second.profile = mix.profile;
  if (mix.candidates > 0) second.candidates = mix.candidates;
  if (mix.max_history > 0) second.max_history = mix.max_history;
  if (mix.max_users > 0) second.max_users = mix.max_users;
  absl::StatusOr<std::unique_ptr<Generator>> a = NewSyntheticGenerator(first);
  if (!a.ok()) return a.status();
  // One catalog: on the same profile the second surface's popular items are the first's.
  absl::StatusOr<std::unique_ptr<Generator>> b = NewSyntheticGenerator(
      second,
      second.profile == first.profile ? std::optional<uint64_t>(options.seed) : std::nullopt);
  if (!b.ok()) return absl::InvalidArgumentError(absl::StrCat("mix: ", b.status().message()));
  const int64_t offset = (*a)->num_users() + options.burst_users;
  return std::unique_ptr<Generator>(
      new MixGenerator(mix, options.seed, *std::move(a), *std::move(b), offset));
}

}  // namespace helm::workload::internal
