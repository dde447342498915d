#include "helm/workload/profile.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace helm::workload {
namespace {

// Sessions. No profile's dataset publishes request-level session statistics (they log events, not
// ranking requests), so the session figures below are modelling choices, stated per profile, in
// the ranges the literature on web and app sessions reports: a handful of requests, seconds to
// tens of seconds apart, and a session ending after 30 minutes of inactivity (the convention used
// to cut click logs, Taobao's UserBehavior included, into sessions; Catledge & Pitkow 1995 measured
// 25.5 min), hence session_away_min_s = 1800 everywhere.
void SetSessions(DatasetProfile& p, double requests_mean, double gap_median_s, double gap_min_s,
                 double gap_max_s, double new_events_mean) {
  p.session_requests_mean = requests_mean;
  p.session_gap_median_s = gap_median_s;
  p.session_gap_sigma = 0.8;
  p.session_gap_min_s = gap_min_s;
  p.session_gap_max_s = gap_max_s;
  p.session_new_events_mean = new_events_mean;
  p.session_away_min_s = 1800.0;
}

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
  // Sessions: MovieLens users rate in bursts (ML-20M ratings of one user often lie seconds apart),
  // paging through screens of movies: 4 requests per session, 15 s median between screens (2 s
  // to 2 min), 3 ratings per screen.
  SetSessions(movielens, 4.0, 15.0, 2.0, 120.0, 3.0);
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
  // Sessions: a shopper browses a few pages, reading each for a while: 3 requests, 30 s median
  // (3 s to 3 min), one event (a view or a rating) between two requests.
  SetSessions(amazon, 3.0, 30.0, 3.0, 180.0, 1.0);
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
  // Sessions: a short-video feed asks for the next page every few videos: 8 requests per app
  // session, 30 s median between pages (5 s to 2 min), 4 videos viewed per page.
  SetSessions(kuairand, 8.0, 30.0, 5.0, 120.0, 4.0);
  profiles.push_back(kuairand);

  // Taobao UserBehavior (Alibaba, Tianchi dataset 649; used by the HSTU paper as "Taobao"): about
  // 1M users sampled at random with their behaviour from 2017-11-25 to 2017-12-03 (9 days):
  // 987,994 users, 4,162,024 items, 9,439 categories, 100,150,807 events, i.e. 101.4 events per
  // user. Four behaviour types: pv 89,716,264 (89.6%), buy 2,015,839 (2.0%), cart 5,530,446
  // (5.5%), fav 2,888,258 (2.9%). No per-user minimum (min 1). Sigma 1.0 (median ~61, a long tail
  // of heavy browsers); the cap, 10,000, is a bound rather than a published maximum. A huge catalog
  // with a strong head (exponent 0.9, a modelling choice like the others); user exponent 0.6.
  // Events of a user are 9 days / 101.4 = 7,670 s apart on average; a returning visit appends ~10
  // events (the day's browsing). Actions: 0 pv, 1 buy, 2 cart, 3 fav, in the data's proportions.
  DatasetProfile taobao;
  taobao.name = "taobao";
  taobao.source =
      "Taobao UserBehavior (2017): 987,994 users, 4,162,024 items, 100,150,807 events "
      "(pv 89.6%, cart 5.5%, fav 2.9%, buy 2.0%)";
  taobao.num_users = 987994;
  taobao.num_items = 4162024;
  taobao.mean_history = 100150807.0 / 987994.0;
  taobao.history_sigma = 1.0;
  taobao.min_history = 1;
  taobao.max_history = 10000;
  taobao.item_zipf = 0.9;
  taobao.user_zipf = 0.6;
  taobao.new_events_per_visit = 10.0;
  taobao.mean_event_gap_s = 9.0 * 86400.0 / (100150807.0 / 987994.0);
  taobao.action_weights = {89716264.0, 2015839.0, 5530446.0, 2888258.0};
  // Sessions: page-view-dominated browsing, many short page views: 6 requests per session, 10 s
  // median (1 s to 90 s), 2 events (views, the odd cart or fav) between two requests.
  SetSessions(taobao, 6.0, 10.0, 1.0, 90.0, 2.0);
  profiles.push_back(taobao);

  // Amazon Video Games, 5-core, from the 2018 Amazon review data (Ni, Li & McAuley, EMNLP 2019;
  // nijianmo.github.io/amazon): 497,577 reviews of 17,408 games by 55,217 users, every user and
  // item with at least 5 reviews; 9.0 reviews per user. (The full 2018 Video Games set has
  // 2,565,349 reviews; the 5-core subset is what sequential recommenders train on.) Short
  // histories: sigma 0.8 over a floor of 5 (the floor lifts the generated mean to ~9.7); cap 1,000
  // (a bound). A small catalog with a strong head of blockbuster games (exponent 0.8); user
  // exponent 0.6. Actions: star rating 1..5 (0..4), skewed to 5 stars (~60% of the ratings).
  DatasetProfile videogames;
  videogames.name = "amazon-video-games";
  videogames.source =
      "Amazon Video Games 5-core (2018): 55,217 users, 17,408 games, 497,577 reviews";
  videogames.num_users = 55217;
  videogames.num_items = 17408;
  videogames.mean_history = 497577.0 / 55217.0;
  videogames.history_sigma = 0.8;
  videogames.min_history = 5;
  videogames.max_history = 1000;
  videogames.item_zipf = 0.8;
  videogames.user_zipf = 0.6;
  videogames.new_events_per_visit = 1.5;
  videogames.mean_event_gap_s = 30.0 * 86400.0;
  videogames.action_weights = {0.07, 0.04, 0.09, 0.20, 0.60};
  // Sessions: as amazon-books: 3 requests, 30 s median (3 s to 3 min), 1 event between requests.
  SetSessions(videogames, 3.0, 30.0, 3.0, 180.0, 1.0);
  profiles.push_back(videogames);

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
