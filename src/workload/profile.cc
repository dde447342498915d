#include "helm/workload/profile.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace helm::workload {
namespace {

std::vector<DatasetProfile> MakeProfiles() {
  std::vector<DatasetProfile> profiles;

  // MovieLens 20M (GroupLens ml-20m README, files.grouplens.org/datasets/movielens/
  // ml-20m-README.html): 20,000,263 ratings of 27,278 movies by 138,493 users, every user with at
  // least 20 ratings; 20,000,263 / 138,493 = 144.4 ratings per user. The cap, 9,254, is the count
  // commonly reported for the most active ML-20M user. Sigma 1.2 puts the median near 70
  // (mean/median = exp(sigma^2/2) ~ 2), the shape of a long-tailed per-user count with a floor
  // of 20. The Zipf exponents are modelling choices, not fits: item exponent 0.8 gives the top 1%
  // of movies ~1/3 of the events, user exponent 0.7 a moderately skewed return rate. Actions: the
  // rating in stars, half stars rounded up (0: 1 star ... 4: 5 stars), weighted roughly like the
  // dataset's rating histogram (4 stars most common, then 3 and 5).
  DatasetProfile movielens;
  movielens.name = "movielens-20m";
  movielens.source = "MovieLens 20M: 138,493 users, 27,278 movies, 20,000,263 ratings";
  movielens.num_users = 138493;
  movielens.num_items = 27278;
  movielens.mean_history = 20000263.0 / 138493.0;
  movielens.history_sigma = 1.2;
  movielens.min_history = 20;
  movielens.max_history = 9254;
  movielens.item_zipf = 0.8;
  movielens.user_zipf = 0.7;
  movielens.new_events_per_visit = 5.0;
  movielens.mean_event_gap_s = 86400.0;
  movielens.action_weights = {0.05, 0.09, 0.26, 0.38, 0.22};
  profiles.push_back(movielens);

  // Amazon Books, 5-core (McAuley et al., SNAP/UCSD Amazon review data 2014, the subset used by
  // sequential recommenders): 8,898,041 reviews of 367,982 books by 603,668 users, every user and
  // book with at least 5 reviews; 14.7 reviews per user. Many users, a large catalog, short
  // histories. Sigma 1.0 (median ~9). A flatter item exponent (0.7) for the long tail of books.
  // Actions: star rating 1..5 (0..4), skewed to 5 stars as Amazon ratings are.
  DatasetProfile amazon;
  amazon.name = "amazon-books";
  amazon.source = "Amazon Books 5-core (2014): 603,668 users, 367,982 books, 8,898,041 reviews";
  amazon.num_users = 603668;
  amazon.num_items = 367982;
  amazon.mean_history = 8898041.0 / 603668.0;
  amazon.history_sigma = 1.0;
  amazon.min_history = 5;
  amazon.max_history = 10000;
  amazon.item_zipf = 0.7;
  amazon.user_zipf = 0.6;
  amazon.new_events_per_visit = 1.5;
  amazon.mean_event_gap_s = 30.0 * 86400.0;
  amazon.action_weights = {0.03, 0.04, 0.09, 0.22, 0.62};
  profiles.push_back(amazon);

  // KuaiRand-27K (Gao et al., CIKM'22; github.com/chongminggao/KuaiRand README): 27,285 users,
  // 32,038,725 videos, 322,278,385 interactions of the standard feeds over four weeks, i.e.
  // ~11,800 events per user ("thousands of historical interactions on average"). Long histories:
  // most users hit any realistic max_history cap. Short-video sessions append tens of events per
  // visit, seconds apart. Item exponent 0.9 (a strong head of viral videos); user exponent 0.5
  // (all users are heavy users). Actions: the strongest feedback signal of the view (0: skip,
  // 1: click / valid play, 2: long view, 3: like, 4: follow, 5: comment, 6: forward).
  DatasetProfile kuairand;
  kuairand.name = "kuairand";
  kuairand.source = "KuaiRand-27K: 27,285 users, 32,038,725 videos, 322,278,385 interactions";
  kuairand.num_users = 27285;
  kuairand.num_items = 32038725;
  kuairand.mean_history = 322278385.0 / 27285.0;
  kuairand.history_sigma = 0.8;
  kuairand.min_history = 100;
  kuairand.max_history = 100000;
  kuairand.item_zipf = 0.9;
  kuairand.user_zipf = 0.5;
  kuairand.new_events_per_visit = 30.0;
  kuairand.mean_event_gap_s = 30.0;
  kuairand.action_weights = {0.55, 0.30, 0.10, 0.04, 0.005, 0.003, 0.002};
  profiles.push_back(kuairand);

  return profiles;
}

}  // namespace

const std::vector<DatasetProfile>& BuiltinProfiles() {
  static const std::vector<DatasetProfile>* const kProfiles =
      new std::vector<DatasetProfile>(MakeProfiles());
  return *kProfiles;
}

absl::StatusOr<DatasetProfile> FindProfile(absl::string_view name) {
  std::vector<std::string> names;
  for (const DatasetProfile& profile : BuiltinProfiles()) {
    if (profile.name == name) return profile;
    names.push_back(profile.name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown workload profile '", name, "' (known: ", absl::StrJoin(names, ", "), ", trace)"));
}

}  // namespace helm::workload
