// Options of a serving node (helm-node): identity, admission, batching, request limits, shutdown.
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::serve {

struct NodeOptions {
  std::string id = "node-0";
  // host:port to listen on; port 0 picks a free port (the chosen one is logged).
  std::string listen = "127.0.0.1:50061";
  int32_t workers = 2;              // compute workers
  int32_t queue_capacity = 256;     // admitted requests waiting at most; beyond: RESOURCE_EXHAUSTED
  int32_t max_batch = 8;            // requests per batch at most
  int32_t max_batch_wait_us = 200;  // a worker waits this long at most to fill a batch
  // Request limits (beyond them: INVALID_ARGUMENT naming the field).
  int32_t max_history = 16384;
  int32_t max_candidates = 4096;
  // Graceful shutdown: in-flight requests get this long to finish after SIGTERM/SIGINT.
  int32_t grace_period_ms = 5000;
  // State stream to the router: a message at most this often (ms).
  int32_t state_publish_interval_ms = 20;
  // The EMB hot-set summary sent to the router: a Bloom filter of this many bits (a power of two;
  // the same on every node) with this many hashes, rebuilt at most every interval (ms).
  int64_t emb_summary_bits = int64_t{1} << 20;
  int32_t emb_summary_hashes = 2;
  int32_t emb_summary_interval_ms = 500;
  // Each worker runs one forward of this many history tokens and candidates (capped at
  // max_history and max_candidates) before the node serves, without touching the caches: the
  // first requests then find the workspace grown, its pages mapped and the BLAS set up. 0: none.
  int32_t warmup_history = 1024;
  int32_t warmup_candidates = 256;

  template <class V>
  void Describe(V& v) {
    v.Field("id", id, "node id shown in replies and stats", config::NotEmpty());
    v.Field("listen", listen, "host:port to serve on (port 0: any free port)", config::NotEmpty());
    v.Field("workers", workers, "compute workers", config::InRange<int32_t>(1, 256));
    v.Field("queue_capacity", queue_capacity, "admission queue capacity (requests)",
            config::InRange<int32_t>(1, 1 << 20));
    v.Field("max_batch", max_batch, "requests per batch at most",
            config::InRange<int32_t>(1, 1024));
    v.Field("max_batch_wait_us", max_batch_wait_us, "wait to fill a batch at most (us)",
            config::InRange<int32_t>(0, 1000000));
    v.Field("max_history", max_history, "history events per request at most",
            config::InRange<int32_t>(1, 1 << 20));
    v.Field("max_candidates", max_candidates, "candidates per request at most",
            config::InRange<int32_t>(1, 1 << 20));
    v.Field("grace_period_ms", grace_period_ms, "time in-flight requests get on shutdown (ms)",
            config::InRange<int32_t>(0, 600000));
    v.Field("state_publish_interval_ms", state_publish_interval_ms,
            "state stream publish interval (ms)", config::InRange<int32_t>(1, 60000));
    v.Field("emb_summary_bits", emb_summary_bits,
            "bits of the EMB hot-set Bloom summary sent to the router (same on every node)",
            config::PowerOfTwoAtLeast(64));
    v.Field("emb_summary_hashes", emb_summary_hashes, "hashes of the EMB Bloom summary",
            config::InRange<int32_t>(1, 16));
    v.Field("emb_summary_interval_ms", emb_summary_interval_ms,
            "rebuild the EMB summary at most this often (ms)",
            config::InRange<int32_t>(10, 600000));
    v.Field("warmup_history", warmup_history,
            "history tokens of each worker's warm-up forward before serving (0: no warm-up)",
            config::InRange<int32_t>(0, 1 << 20));
    v.Field("warmup_candidates", warmup_candidates, "candidates of each worker's warm-up forward",
            config::InRange<int32_t>(0, 1 << 20));
  }
};

}  // namespace helm::serve
