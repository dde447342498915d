// helm_bench_memory: the unified pool's headline figures, each measured side by side in one run
// (Google Benchmark micro-benchmarks first, then the summary that prints HELM_RESULT lines):
//   emb_lookup_vs_flat_hash_map  batch EMB lookup throughput on hits over a bare
//                                absl::flat_hash_map lookup of the same ids (target >= 0.5)
//   emb_hit_gain_vs_lru          hit-rate points over plain LRU at equal capacity on Zipf(1.0)
//                                ids with 10% one-off scan ids (target >= 5)
//   kv_token_hit_vs_lru          KV token hit ratio, cost-aware over LRU-by-user, on a Zipf
//                                user-revisit stream with long-tailed histories (target >= 1.0)
//   lookup_p99_resize_vs_idle    EMB lookup p99 while a resize moves 20% of the pool, over idle
//                                (target <= 2.0)
//   host_gather_prefetch_vs_plain  the storage's gather of EMB misses (pool::GatherHostCopies)
//                                over a plain memcpy loop, random rows of a 1 GiB table (report)
//   emb_ghost_hits_vs_larger_cache  the EMB ghost list's hits (pool.ghost_share) over the hits a
//                                cache larger by that share gains on the same trace (ideal 1)
//   kv_ghost_tokens_vs_larger_cache  the same for the KV cache's ghost tokens (ideal 1), under its
//                                default cost-aware eviction
//   kv_ghost_tokens_vs_larger_cache_lru  the same under LRU eviction (report)
//   emb_lookup_ghost_vs_off      batch EMB lookup time on that miss-heavy trace with the ghost
//                                list over without (its cost, target <= 1.05)
//   emb_lookup_ghost_all_ids_vs_off  the same with the ghost tracking every id (report: why it
//                                samples)
// Sized for a 2-core machine: the whole run takes well under a minute.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <list>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "benchmark/benchmark.h"
#include "emb/zipf.h"  // tests/emb: the Zipf sampler the EMB tests use
#include "helm/common/histogram.h"
#include "helm/common/process.h"
#include "helm/emb/emb_cache.h"
#include "helm/kv/kv_cache.h"
#include "helm/model/kv_geometry.h"
#include "helm/pool/pool.h"
#include "helm/pool/storage.h"
#include "spdlog/spdlog.h"

namespace helm {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---- Figure 1: lookup throughput on hits vs a bare flat_hash_map ----------------------------

constexpr int64_t kLookupItems = 200000;
constexpr int64_t kResident = 100000;
constexpr int kBatch = 2048;

struct LookupSetup {
  std::unique_ptr<pool::Pool> pool;
  std::unique_ptr<emb::EmbCache> cache;
  absl::flat_hash_map<int64_t, int64_t> bare;
  std::vector<std::vector<int64_t>> batches;
};

LookupSetup& Lookups() {
  static LookupSetup* s = [] {
    auto* s = new LookupSetup();
    pool::PoolOptions po;
    po.bytes = int64_t{64} << 20;
    po.backend = "cpu";
    po.initial_split = 0.95;
    emb::EmbOptions eo;
    eo.num_items = kLookupItems;
    eo.dim = 64;  // 256 B rows; capacity ~250K rows
    s->pool = *pool::Pool::Create(po);
    s->cache = *emb::EmbCache::Create(eo, s->pool.get());
    // Resident set: kResident ids spread over the table, admitted into free slots.
    std::mt19937_64 rng(1);
    std::vector<int64_t> ids(kLookupItems);
    for (int64_t i = 0; i < kLookupItems; ++i) ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), rng);
    ids.resize(kResident);
    for (size_t i = 0; i < ids.size(); i += kBatch) {
      std::vector<int64_t> b(ids.begin() + i, ids.begin() + std::min(ids.size(), i + kBatch));
      auto r = s->cache->Lookup(b);
      for (size_t j = 0; j < b.size(); ++j) s->bare[b[j]] = r->locations()[j];
    }
    // Batches of hits: uniform over the resident set (repeats allowed, as in real batches).
    for (int b = 0; b < 64; ++b) {
      std::vector<int64_t> batch(kBatch);
      for (auto& id : batch) id = ids[rng() % ids.size()];
      s->batches.push_back(std::move(batch));
    }
    return s;
  }();
  return *s;
}

int64_t BareLookup(const absl::flat_hash_map<int64_t, int64_t>& map,
                   const std::vector<int64_t>& ids, std::vector<int64_t>* out) {
  out->resize(ids.size());
  int64_t found = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = map.find(ids[i]);
    if (it != map.end()) {
      (*out)[i] = it->second;
      ++found;
    } else {
      (*out)[i] = -1;
    }
  }
  return found;
}

void BM_FlatHashMapLookup(benchmark::State& state) {
  LookupSetup& s = Lookups();
  std::vector<int64_t> out;
  size_t b = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(BareLookup(s.bare, s.batches[b++ % s.batches.size()], &out));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_FlatHashMapLookup)->MinTime(0.3);

void BM_EmbLookupHits(benchmark::State& state) {
  LookupSetup& s = Lookups();
  emb::EmbLookup r;
  size_t b = 0;
  for (auto _ : state) {
    if (!s.cache->Lookup(s.batches[b++ % s.batches.size()], &r).ok()) state.SkipWithError("lookup");
    benchmark::DoNotOptimize(r.locations().data());
  }
  r.Release();
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_EmbLookupHits)->MinTime(0.3);

// Interleaved rounds; the ratio of medians of per-round throughput.
double LookupRatio() {
  LookupSetup& s = Lookups();
  std::vector<double> ratios;
  std::vector<int64_t> out;
  emb::EmbLookup r;
  for (int round = 0; round < 15; ++round) {
    auto t0 = Clock::now();
    for (int rep = 0; rep < 4; ++rep) {
      for (const auto& batch : s.batches) benchmark::DoNotOptimize(BareLookup(s.bare, batch, &out));
    }
    auto t1 = Clock::now();
    for (int rep = 0; rep < 4; ++rep) {
      for (const auto& batch : s.batches) {
        (void)s.cache->Lookup(batch, &r);
        benchmark::DoNotOptimize(r.locations().data());
      }
    }
    r.Release();
    auto t2 = Clock::now();
    ratios.push_back(Seconds(t1 - t0) / Seconds(t2 - t1));
  }
  std::sort(ratios.begin(), ratios.end());
  return ratios[ratios.size() / 2];
}

// ---- Figure 2: EMB hit rate over plain LRU (Zipf 1.0 + 10% one-off scan ids) ---------------

class PlainLru {
 public:
  explicit PlainLru(int64_t capacity) : capacity_(capacity) { map_.reserve(capacity + 1); }
  bool Access(int64_t id) {
    auto it = map_.find(id);
    if (it != map_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return true;
    }
    order_.push_front(id);
    map_[id] = order_.begin();
    if (static_cast<int64_t>(map_.size()) > capacity_) {
      map_.erase(order_.back());
      order_.pop_back();
    }
    return false;
  }

 private:
  int64_t capacity_;
  std::list<int64_t> order_;
  absl::flat_hash_map<int64_t, std::list<int64_t>::iterator> map_;
};

struct HitRates {
  double ours = 0, lru = 0;
};

// Batches of Zipf(1.0) ids over 1M items with 10% one-off scan ids; *num_items: the ids used.
std::vector<std::vector<int64_t>> ZipfScanTrace(int batches, int64_t* num_items) {
  constexpr int64_t kZipfItems = 1000000;
  std::mt19937_64 rng(7);
  testing::Zipf zipf(kZipfItems, 1.0);
  int64_t next_scan = kZipfItems;
  std::vector<std::vector<int64_t>> trace(batches, std::vector<int64_t>(kBatch));
  for (auto& batch : trace) {
    for (auto& id : batch) id = (rng() % 10 == 0) ? next_scan++ : zipf(rng);
  }
  *num_items = next_scan;
  return trace;
}

HitRates EmbHitRates() {
  constexpr int kBatches = 2000;
  int64_t next_scan = 0;
  const std::vector<std::vector<int64_t>> trace = ZipfScanTrace(kBatches, &next_scan);
  // Payload-free pool: 16 chunks of 2 MiB, 6 for EMB: 6 x 8192 rows of 256 B (4.9% of the items).
  pool::PoolOptions po;
  po.bytes = int64_t{32} << 20;
  po.backend = "none";
  po.initial_split = 6.0 / 16;
  emb::EmbOptions eo;
  eo.num_items = next_scan;
  eo.dim = 64;
  auto pool = *pool::Pool::Create(po);
  auto cache = *emb::EmbCache::Create(eo, pool.get());
  const int64_t capacity = cache->capacity_rows();
  PlainLru lru(capacity);
  const int warmup = kBatches / 4;
  emb::EmbLookup r;
  emb::EmbStats before;
  int64_t lru_hits = 0, lru_total = 0;
  for (int b = 0; b < kBatches; ++b) {
    if (b == warmup) before = cache->stats();
    (void)cache->Lookup(trace[b], &r);
    for (int64_t id : trace[b]) {
      const bool hit = lru.Access(id);
      if (b >= warmup) {
        lru_hits += hit ? 1 : 0;
        ++lru_total;
      }
    }
  }
  const emb::EmbStats window = cache->stats() - before;
  HitRates h;
  h.ours = window.hit_rate();
  h.lru = static_cast<double>(lru_hits) / lru_total;
  return h;
}

// ---- Figure 3: KV token hit ratio, cost-aware vs LRU-by-user -------------------------------

struct KvRun {
  double token_hit = 0;
  int64_t trimmed = 0, evicted = 0;
};

// A Zipf(0.9) user-revisit stream over 20K users: each request is (user, history length), the
// first visit log-normal around 400 tokens, each return 1-16 events longer.
std::vector<std::pair<int64_t, int64_t>> KvRequests() {
  constexpr int64_t kUsers = 20000;
  constexpr int kRequests = 60000;
  std::mt19937_64 rng(11);
  testing::Zipf users(kUsers, 0.9);
  std::lognormal_distribution<double> first_len(std::log(400.0), 1.0);
  std::vector<int64_t> length(kUsers, 0);
  std::vector<std::pair<int64_t, int64_t>> requests;
  for (int i = 0; i < kRequests; ++i) {
    const int64_t u = users(rng);
    length[u] = length[u] == 0 ? std::clamp<int64_t>(std::llround(first_len(rng)), 16, 16000)
                               : length[u] + 1 + static_cast<int64_t>(rng() % 16);
    requests.emplace_back(u, length[u]);
  }
  return requests;
}

// Serves `requests` through a KV cache (2 layers, 2 heads, d 32: 512 B a token in fp32) on a
// payload-free pool of `pool_options`; returns its stats over the requests after the first 20%.
kv::KvStats ServeKv(const std::vector<std::pair<int64_t, int64_t>>& requests,
                    const std::string& eviction, const pool::PoolOptions& pool_options) {
  model::ModelOptions m;
  kv::KvOptions ko;
  ko.eviction = eviction;
  auto pool = *pool::Pool::Create(pool_options);
  auto cache = *kv::KvCache::Create(model::KvCacheOptionsFor(m, ko), pool.get());
  const size_t warmup = requests.size() / 5;
  kv::KvStats before;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i == warmup) before = cache->stats();
    const auto [u, length] = requests[i];
    auto lease = cache->AcquireUnverified(u, length);
    const int64_t suffix = length - lease->cached_tokens();
    if (suffix > 0) {
      auto reservation = lease->Reserve(suffix);
      if (reservation.ok()) (void)lease->Commit();
    }
  }
  return cache->stats() - before;
}

KvRun KvTokenHit(const std::string& eviction) {
  pool::PoolOptions po;
  po.bytes = int64_t{256} << 20;
  po.backend = "none";
  po.initial_split = 0.5;  // 128 MiB of KV: ~262K tokens, a few % of all histories
  const kv::KvStats w = ServeKv(KvRequests(), eviction, po);
  return KvRun{w.token_hit_ratio(), w.trimmed_users, w.evicted_users};
}

// ---- Figure 3b: the ghost lists against caches larger by their share -------------------------

struct GhostRun {
  int64_t emb_predicted = 0, emb_gained = 0;  // ghost hits; the larger cache's extra hits
  int64_t kv_predicted = 0, kv_gained = 0;    // ghost tokens; the larger cache's extra hit tokens
  int64_t kv_lru_predicted = 0, kv_lru_gained = 0;  // the same under LRU eviction
  // Lookup time of the trace: the ghost on (a sixteenth of the ids, the default), on for every id,
  // and off.
  double emb_with_s = 0, emb_all_ids_s = 0, emb_without_s = 0;
};

GhostRun Ghosts() {
  GhostRun g;
  // EMB: pools of 256 chunks of 256 KiB; EMB 96 chunks, and the larger cache 12 more (the ghost
  // covers 12 chunks' worth: ghost_share 12/256). The trace is figure 2's, miss-heavy.
  constexpr int kBatches = 1200;
  constexpr double kShare = 12.0 / 256;
  int64_t num_items = 0;
  const std::vector<std::vector<int64_t>> trace = ZipfScanTrace(kBatches, &num_items);
  auto make = [&](double split, double ghost_share, double ghost_sample_rate = 1.0 / 16) {
    pool::PoolOptions po;
    po.bytes = int64_t{64} << 20;
    po.chunk_bytes = int64_t{256} << 10;
    po.backend = "none";
    po.initial_split = split;
    po.ghost_share = ghost_share;
    emb::EmbOptions eo;
    eo.num_items = num_items;
    eo.dim = 64;
    eo.ghost_sample_rate = ghost_sample_rate;
    auto pool = *pool::Pool::Create(po);
    auto cache = *emb::EmbCache::Create(eo, pool.get());
    return std::make_pair(std::move(pool), std::move(cache));
  };
  auto base = make(96.0 / 256, kShare), all_ids = make(96.0 / 256, kShare, 1.0),
       off = make(96.0 / 256, 0), larger = make(108.0 / 256, 0);
  emb::EmbLookup r;
  emb::EmbStats base0, larger0;
  const int warmup = kBatches / 4;
  for (int b = 0; b < kBatches; ++b) {
    if (b == warmup) {
      base0 = base.second->stats();
      larger0 = larger.second->stats();
    }
    // The ghost's cost: the same batch through the cache with it, with it on every id, and
    // without it, the order rotating.
    for (int k = 0; k < 3; ++k) {
      const int which = (b + k) % 3;
      emb::EmbCache& cache = *(which == 0 ? base : which == 1 ? all_ids : off).second;
      double& seconds = which == 0 ? g.emb_with_s : which == 1 ? g.emb_all_ids_s : g.emb_without_s;
      const auto t0 = Clock::now();
      (void)cache.Lookup(trace[b], &r);
      r.Release();
      seconds += Seconds(Clock::now() - t0);
    }
    (void)larger.second->Lookup(trace[b], &r);
    r.Release();
  }
  const emb::EmbStats bw = base.second->stats() - base0;
  g.emb_predicted = bw.ghost_hits;
  g.emb_gained = (larger.second->stats() - larger0).hits - bw.hits;
  // KV: figure 3's stream; KV 64 of 128 chunks of 2 MiB, the larger 6 more (ghost_share 6/128).
  const std::vector<std::pair<int64_t, int64_t>> requests = KvRequests();
  pool::PoolOptions po;
  po.bytes = int64_t{256} << 20;
  po.backend = "none";
  for (const std::string& eviction : {std::string("cost_aware"), std::string("lru")}) {
    po.initial_split = 0.5;
    po.ghost_share = 6.0 / 128;
    const kv::KvStats kb = ServeKv(requests, eviction, po);
    po.initial_split = 58.0 / 128;
    po.ghost_share = 0;
    const kv::KvStats kl = ServeKv(requests, eviction, po);
    const bool lru = eviction == "lru";
    (lru ? g.kv_lru_predicted : g.kv_predicted) = kb.ghost_hit_tokens;
    (lru ? g.kv_lru_gained : g.kv_gained) = kl.hit_tokens - kb.hit_tokens;
  }
  return g;
}

// ---- Figure 4: lookup p99 while a resize moves 20% of the pool -----------------------------

struct TailSample {
  double t_ms;  // start of the lookup, from the start of the first idle window
  double us;    // its latency
  bool resizing;
};

struct TailLatency {
  double idle_p99_us = 0, resize_p99_us = 0, idle_p50_us = 0, resize_p50_us = 0;
  int64_t idle_n = 0, resize_n = 0;
  double resize_ms = 0;
  int64_t moved_bytes = 0;
  std::vector<TailSample> samples;  // every measured lookup, in time order
};

TailLatency ResizeTail() {
  // 40 chunks of 2 MiB; EMB 24 -> 16 chunks (20% of the pool), four times. Each round starts from
  // a fresh pool whose cache is filled with 196K rows in random order (growing back instead would
  // leave empty chunks, and the next shrink would release those without moving anything).
  // Lookups draw Zipf(0.9) ids from the 100K hottest, which fit in either split. So the lookups
  // hit in both phases, and every shrink must relocate the hot rows of the released chunks
  // (displacing cold rows elsewhere) and drop cold ones: what is measured is the resize itself,
  // not a smaller cache. Each round's idle window comes first, from the same state, and lasts as
  // long as the previous round's resize (at least 400 lookups).
  pool::PoolOptions po;
  po.bytes = int64_t{80} << 20;
  po.backend = "cpu";
  po.initial_split = 0.6;
  po.r_min = 0.1;
  po.r_max = 0.9;
  po.max_step_bytes = int64_t{1} << 20;
  emb::EmbOptions eo;
  eo.num_items = 200000;
  eo.dim = 64;
  constexpr int64_t kHot = 100000;
  model::ModelOptions m;
  kv::KvOptions ko;
  std::mt19937_64 rng(3);
  testing::Zipf zipf(kHot, 0.9);
  std::vector<std::vector<int64_t>> batches(256, std::vector<int64_t>(kBatch));
  for (auto& b : batches) {
    for (auto& id : b) id = zipf(rng);
  }
  std::vector<int64_t> fill;

  LatencyHistogram idle, resizing;
  TailLatency out;
  Clock::time_point origin = Clock::now();
  Clock::duration last_resize{};
  for (int round = 0; round < 4; ++round) {
    auto pool = *pool::Pool::Create(po);
    auto cache = *emb::EmbCache::Create(eo, pool.get());
    auto kv_cache = *kv::KvCache::Create(model::KvCacheOptionsFor(m, ko), pool.get());
    emb::EmbLookup r;
    if (fill.empty()) {
      fill.resize(static_cast<size_t>(cache->capacity_rows()));
      for (size_t i = 0; i < fill.size(); ++i) fill[i] = static_cast<int64_t>(i);
      std::shuffle(fill.begin(), fill.end(), rng);
    }
    for (size_t first = 0; first < fill.size(); first += kBatch) {
      const size_t n = std::min<size_t>(kBatch, fill.size() - first);
      (void)cache->Lookup(absl::MakeConstSpan(fill.data() + first, n), &r);
    }
    size_t next = 0;
    // One lookup; recorded into `histogram` and the time series unless `histogram` is null.
    auto lookup = [&](LatencyHistogram* histogram, bool during_resize) {
      const auto start = Clock::now();
      (void)cache->Lookup(batches[next++ % batches.size()], &r);
      r.Release();
      const int64_t ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
      if (histogram == nullptr) return;
      histogram->Record(ns);
      out.samples.push_back(
          TailSample{std::chrono::duration<double, std::milli>(start - origin).count(), ns / 1e3,
                     during_resize});
    };
    for (int i = 0; i < 300; ++i) lookup(nullptr, false);  // warm-up, unmeasured
    const auto idle_end = Clock::now() + last_resize;
    for (int i = 0; i < 400 || Clock::now() < idle_end; ++i) lookup(&idle, false);

    pool->SetTarget(0.4);
    std::atomic<bool> done{false};
    const auto t0 = Clock::now();
    std::thread resizer([&] {
      // As a node's resizer thread does: steps back to back, at the serving threads' priority
      // (the cache keeps each step's lock holds short and yields them to waiting lookups).
      while (!pool->Step().idle) {
      }
      done = true;
    });
    while (!done) lookup(&resizing, true);
    resizer.join();
    last_resize = Clock::now() - t0;
    out.resize_ms += Seconds(last_resize) * 1e3;
    out.moved_bytes += pool->stats().migration_bytes_done;
  }
  out.idle_p99_us = idle.Quantile(0.99) / 1e3;
  out.resize_p99_us = resizing.Quantile(0.99) / 1e3;
  out.idle_p50_us = idle.Quantile(0.5) / 1e3;
  out.resize_p50_us = resizing.Quantile(0.5) / 1e3;
  out.idle_n = idle.Count();
  out.resize_n = resizing.Count();
  return out;
}

}  // namespace
}  // namespace helm

// The node storage's gather of EMB misses (pool::GatherHostCopies, which prefetches the rows a few
// copies ahead) over a plain memcpy loop of the same copies: batches of 2048 random 512-byte rows
// (emb dim 256, bf16) of a 1 GiB host table, the two alternating on fresh draws, medians.
double HostGatherRatio() {
  constexpr int64_t kRow = 512;
  constexpr int64_t kRows = (int64_t{1} << 30) / kRow;
  constexpr int64_t kCopies = 2048;
  std::vector<uint8_t> table(static_cast<size_t>(kRows * kRow));
  for (size_t i = 0; i < table.size(); i += 4096) table[i] = static_cast<uint8_t>(i >> 12);
  std::vector<uint8_t> staging(static_cast<size_t>(kCopies * kRow));
  std::vector<helm::pool::HostCopy> copies(kCopies);
  std::mt19937_64 rng(21);
  std::vector<double> plain, gathered;
  for (int round = 0; round < 60; ++round) {
    for (int64_t j = 0; j < kCopies; ++j) {
      const uint64_t id = rng() % static_cast<uint64_t>(kRows);
      copies[j] = helm::pool::HostCopy{j * kRow, table.data() + id * kRow, kRow};
    }
    auto t0 = std::chrono::steady_clock::now();
    if (round % 2 == 0) {
      helm::pool::GatherHostCopies(staging.data(), copies);
    } else {
      for (const helm::pool::HostCopy& c : copies) {
        std::memcpy(staging.data() + c.dst_offset, c.src, static_cast<size_t>(c.bytes));
      }
    }
    benchmark::DoNotOptimize(staging.data());
    benchmark::ClobberMemory();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    (round % 2 == 0 ? gathered : plain).push_back(s);
  }
  std::sort(plain.begin(), plain.end());
  std::sort(gathered.begin(), gathered.end());
  const double plain_s = plain[plain.size() / 2], gathered_s = gathered[gathered.size() / 2];
  std::printf(
      "host gather of 2048 random 512-byte rows of a 1 GiB table: %.2f GB/s with "
      "prefetching, %.2f GB/s plain\n",
      kCopies * kRow / gathered_s / 1e9, kCopies * kRow / plain_s / 1e9);
  return plain_s / gathered_s;
}

// Writes the resize figure's lookups as CSV (t_ms, latency_us, phase) for
// scripts/plot_resize_latency.py.
bool WriteTailCsv(const std::vector<helm::TailSample>& samples, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "helm_bench_memory: cannot write %s\n", path.c_str());
    return false;
  }
  std::fprintf(f, "t_ms,latency_us,phase\n");
  for (const helm::TailSample& s : samples) {
    std::fprintf(f, "%.3f,%.2f,%s\n", s.t_ms, s.us, s.resizing ? "resize" : "idle");
  }
  return std::fclose(f) == 0;
}

int main(int argc, char** argv) {
  helm::ConfigureProcess();
  spdlog::set_level(spdlog::level::warn);
  // --csv PATH: also write the resize figure's lookup latencies over time (for a plot).
  std::string csv_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
      csv_path = argv[i + 1];
      for (int j = i; j + 2 <= argc; ++j) argv[j] = argv[j + 2];  // hide it from the library
      argc -= 2;
      break;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  using namespace helm;
  const double lookup_ratio = LookupRatio();
  const HitRates hits = EmbHitRates();
  const KvRun cost = KvTokenHit("cost_aware");
  const KvRun lru = KvTokenHit("lru");
  const TailLatency tail = ResizeTail();
  const double gather_ratio = HostGatherRatio();
  const GhostRun ghosts = Ghosts();

  std::printf("\n== helm_bench_memory summary ==\n");
  std::printf("EMB lookup on hits (batch %d, %lld resident rows): %.2fx a bare flat_hash_map\n",
              kBatch, static_cast<long long>(kResident), lookup_ratio);
  std::printf("EMB hit rate, Zipf(1.0) + 10%% one-off scans: TinyLFU %.4f vs LRU %.4f\n", hits.ours,
              hits.lru);
  std::printf(
      "KV token hit ratio: cost-aware %.4f (trims %lld, drops %lld) vs LRU %.4f (drops %lld)\n",
      cost.token_hit, static_cast<long long>(cost.trimmed), static_cast<long long>(cost.evicted),
      lru.token_hit, static_cast<long long>(lru.evicted));
  std::printf(
      "EMB lookup latency: idle p50 %.1f us p99 %.1f us (n=%lld); during resize p50 %.1f us "
      "p99 %.1f us (n=%lld); %.1f MiB relocated in %.1f ms over 4 resizes\n",
      tail.idle_p50_us, tail.idle_p99_us, static_cast<long long>(tail.idle_n), tail.resize_p50_us,
      tail.resize_p99_us, static_cast<long long>(tail.resize_n), tail.moved_bytes / 1048576.0,
      tail.resize_ms);
  std::printf(
      "ghost lists (5%% of the pool): EMB %lld ghost hits vs %lld more hits in a cache larger by "
      "that share; KV %lld ghost tokens vs %lld more hit tokens; EMB lookups %.3f s with the "
      "ghost, %.3f s with it on every id, %.3f s without\n",
      static_cast<long long>(ghosts.emb_predicted), static_cast<long long>(ghosts.emb_gained),
      static_cast<long long>(ghosts.kv_predicted), static_cast<long long>(ghosts.kv_gained),
      ghosts.emb_with_s, ghosts.emb_all_ids_s, ghosts.emb_without_s);
  if (!csv_path.empty()) {
    if (!WriteTailCsv(tail.samples, csv_path)) return 1;
    std::printf("lookup latencies over time: %s\n", csv_path.c_str());
  }
  std::printf("HELM_RESULT emb_lookup_vs_flat_hash_map %.3f\n", lookup_ratio);
  std::printf("HELM_RESULT emb_hit_gain_vs_lru %.2f\n", (hits.ours - hits.lru) * 100.0);
  std::printf("HELM_RESULT kv_token_hit_vs_lru %.3f\n",
              lru.token_hit > 0 ? cost.token_hit / lru.token_hit : 0.0);
  std::printf("HELM_RESULT lookup_p99_resize_vs_idle %.3f\n",
              tail.idle_p99_us > 0 ? tail.resize_p99_us / tail.idle_p99_us : 0.0);
  std::printf("HELM_RESULT host_gather_prefetch_vs_plain %.3f\n", gather_ratio);
  auto ratio = [](int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / b : 0.0; };
  std::printf("HELM_RESULT emb_ghost_hits_vs_larger_cache %.3f\n",
              ratio(ghosts.emb_predicted, ghosts.emb_gained));
  std::printf("HELM_RESULT kv_ghost_tokens_vs_larger_cache %.3f\n",
              ratio(ghosts.kv_predicted, ghosts.kv_gained));
  std::printf("HELM_RESULT kv_ghost_tokens_vs_larger_cache_lru %.3f\n",
              ratio(ghosts.kv_lru_predicted, ghosts.kv_lru_gained));
  std::printf("HELM_RESULT emb_lookup_ghost_vs_off %.3f\n",
              ghosts.emb_without_s > 0 ? ghosts.emb_with_s / ghosts.emb_without_s : 0.0);
  std::printf("HELM_RESULT emb_lookup_ghost_all_ids_vs_off %.3f\n",
              ghosts.emb_without_s > 0 ? ghosts.emb_all_ids_s / ghosts.emb_without_s : 0.0);
  return 0;
}
