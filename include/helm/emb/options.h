// Options of the embedding hot cache and of the host item table behind it.
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::emb {

struct EmbOptions {
  // Host item table: num_items rows of dim values. It is the truth; the cache holds hot rows.
  int64_t num_items = 200000;
  int32_t dim = 64;
  // Storage dtype of the table and of cached rows: "fp32", "fp16" or "bf16".
  std::string dtype = "fp32";
  // A NumPy .npy file (2-D, [num_items, dim], matching dtype), mmapped; "" for seeded random rows.
  std::string table_path;
  uint64_t seed = 1;
  // Admission in front of eviction: "tinylfu" (count-min frequency filter) or "always".
  std::string admission = "tinylfu";
  // Width of the count-min sketch per expected cached row (counters = width * capacity rows).
  int32_t sketch_width_per_row = 4;
  // Sketch counters are halved every `sketch_reset_factor * capacity` increments (aging).
  int32_t sketch_reset_factor = 10;
  // The ghost list of evicted rows (pool.ghost_share; EmbStats::ghost_hits) tracks a hashed
  // sample of this share of the ids (as SHARDS samples keys), its hits scaled back up: a sixteenth
  // costs a miss-heavy lookup 1-2% where every id costs ~13% (helm_bench_memory). A sampling
  // cache's ghost takes all of its sample where that is thinner. The predictive split controller's
  // reuse times (serve/reuse_tracker.h) sample the ids at this rate too.
  double ghost_sample_rate = 1.0 / 16;
  // The simulator's miniature cache (id_sampler.h; not a YAML key: simulator.emb_sample_rate sets
  // it): below 1, only about this share of the ids, chosen by hashing with sample_salt, is looked
  // up, in slots 1/sample_rate times a row's size, and the cache's counts are scaled back up.
  // Needs payload-free storage (no bytes are read through such a cache).
  double sample_rate = 1.0;
  uint64_t sample_salt = 0;

  template <class V>
  void Describe(V& v) {
    v.Field("num_items", num_items, "rows in the host item table", config::AtLeast<int64_t>(1));
    v.Field("dim", dim, "values per row", config::InRange<int32_t>(1, 4096));
    v.Field("dtype", dtype, "row dtype", config::OneOf({"fp32", "fp16", "bf16"}));
    v.Field("table_path", table_path, "NumPy .npy table to mmap (\"\": seeded random rows)");
    v.Field("seed", seed, "seed of the random table");
    v.Field("admission", admission, "admission policy", config::OneOf({"tinylfu", "always"}));
    v.Field("sketch_width_per_row", sketch_width_per_row, "count-min counters per cacheable row",
            config::InRange<int32_t>(1, 64));
    v.Field("sketch_reset_factor", sketch_reset_factor,
            "halve sketch counters every factor x capacity increments",
            config::InRange<int32_t>(1, 1000));
    v.Field("ghost_sample_rate", ghost_sample_rate,
            "share of the ids the ghost list of evicted rows tracks (hashed sample)",
            config::InRange(0.001, 1.0));
  }
};

}  // namespace helm::emb
