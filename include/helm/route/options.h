// Options of the front router (helm-router).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "helm/config/describe.h"

namespace helm::route {

// Nodes one router (and one ClusterState) handles at most.
inline constexpr int kMaxNodes = 4096;

struct RouterOptions {
  std::string listen = "127.0.0.1:50060";
  // The nodes: a static list of host:port, or `dns` (a name whose addresses are the nodes, with
  // `dns_port`). Exactly one of the two.
  std::vector<std::string> nodes = {"127.0.0.1:50061", "127.0.0.1:50062"};
  std::string dns;
  int32_t dns_port = 50061;
  // Policy: "helm" (KV residency + EMB locality - load), or a baseline: "round_robin",
  // "least_loaded", "consistent_hash" (on user), "kv_affinity" (residency only).
  std::string policy = "helm";
  double w_kv = 1.0;
  // K/V binds a user to a node only when it spares at least this share of the request's token
  // passes (its history and its candidates); below, the request is placed like a new user's
  // (policy.h). 0: any K/V binds.
  double kv_min_share = 0.1;
  double w_emb = 0.3;
  double w_load = 1.0;
  // Candidate ids sampled per request to estimate EMB locality (0: ignore EMB locality).
  int32_t emb_sample = 16;
  // KV memory pressure (policy.h): pressure(n) = clamp((kv_occupancy - mem_knee) / (1 - mem_knee)
  // + mem_eviction_weight x kv_eviction_rate, 0, 1), weighted by w_mem in the score and setting
  // each node's share of new users (w_mem 0: memory pressure ignored, equal shares).
  double w_mem = 1.0;                 // weight of memory pressure in the score
  double mem_knee = 0.8;              // KV occupancy (share of capacity) where pressure starts
  double mem_eviction_weight = 10.0;  // pressure per unit of eviction rate (capacity per second)
  // Bounded-load placement of users with K/V on no node: a node takes one only while its recent
  // new-user placements stay within (1 + placement_slack) x its fair share (rounded up). 0: equal
  // nodes take them in turn, EMB locality choosing among those not ahead. Any slack lets a node
  // take runs of them, and a run of arrivals is a queue: in the simulator's paper-table cells
  // (2 nodes at 72% busy, most requests with K/V on no node) P99 was 3.85-3.96 ms at 0.05 and
  // 3.50-3.53 ms at 0 over three seeds (round robin: 3.29-3.34).
  double placement_slack = 0.0;
  // Attempts per request at most (the first try included) on UNAVAILABLE / broken connections.
  int32_t max_attempts = 3;
  // Deadline of one attempt on a node (ms): an attempt gets at least this long, and longer when
  // the node's own load reports say it needs it (router::kAttemptTimeoutServiceMultiple times its
  // expected response time: its queue in batches of its capacity times its smoothed batch compute
  // time). When it expires the router cancels the attempt, counts a failure against the node
  // (towards failures_to_eject) and retries the request on the next-best node, within the client's
  // deadline and max_attempts. It catches a node that hangs with its connections open (SIGSTOP, a
  // stuck process), which would otherwise hold every request it got until the client's deadline.
  // 0: an attempt gets the client's whole deadline. Default 250: about three times the 80 ms P99
  // SLO of recsys serving, and tens of times a node's normal response time.
  int32_t attempt_timeout_ms = 250;
  // Health checks: interval, and consecutive failures before a node is taken out.
  int32_t health_check_interval_ms = 500;
  int32_t failures_to_eject = 3;
  // Deadline applied when a client sets none (ms).
  int32_t default_deadline_ms = 1000;
  int32_t grace_period_ms = 5000;

  template <class V>
  void Describe(V& v) {
    v.Field("listen", listen, "host:port to serve on (port 0: any free port)", config::NotEmpty());
    v.Field("nodes", nodes, "node addresses host:port (or use dns)");
    v.Field("dns", dns, "DNS name whose addresses are the nodes (\"\": use nodes)");
    v.Field("dns_port", dns_port, "node port for dns", config::InRange<int32_t>(1, 65535));
    v.Field(
        "policy", policy, "routing policy",
        config::OneOf({"helm", "round_robin", "least_loaded", "consistent_hash", "kv_affinity"}));
    v.Field("w_kv", w_kv, "weight of KV residency", config::InRange(0.0, 100.0));
    v.Field("kv_min_share", kv_min_share,
            "share of a request's tokens (history + candidates) its K/V on a node must cover to "
            "bind it there",
            config::InRange(0.0, 1.0));
    v.Field("w_emb", w_emb, "weight of EMB locality", config::InRange(0.0, 100.0));
    v.Field("w_load", w_load, "weight of load", config::InRange(0.0, 100.0));
    v.Field("emb_sample", emb_sample, "candidate ids sampled per request for EMB locality",
            config::InRange<int32_t>(0, 1024));
    v.Field("w_mem", w_mem, "weight of KV memory pressure", config::InRange(0.0, 100.0));
    v.Field("mem_knee", mem_knee,
            "KV occupancy (share of KV capacity) above which memory pressure starts",
            config::InRange(0.0, 0.99));
    v.Field("mem_eviction_weight", mem_eviction_weight,
            "memory pressure per unit of KV eviction rate (share of KV capacity evicted per s)",
            config::InRange(0.0, 1000.0));
    v.Field("placement_slack", placement_slack,
            "new users a node may take beyond its fair share, as a fraction of that share",
            config::InRange(0.0, 10.0));
    v.Field("max_attempts", max_attempts, "tries per request at most",
            config::InRange<int32_t>(1, 16));
    v.Field("attempt_timeout_ms", attempt_timeout_ms,
            "an attempt on a node gets at least this long (ms; longer when the node reports a "
            "queue) before the router retries the request on another node; 0: the client's whole "
            "deadline",
            config::InRange<int32_t>(0, 3600000));
    v.Field("health_check_interval_ms", health_check_interval_ms, "health check interval (ms)",
            config::InRange<int32_t>(10, 600000));
    v.Field("failures_to_eject", failures_to_eject, "consecutive failures before ejecting a node",
            config::InRange<int32_t>(1, 1000));
    v.Field("default_deadline_ms", default_deadline_ms, "deadline when the client sets none (ms)",
            config::InRange<int32_t>(1, 3600000));
    v.Field("grace_period_ms", grace_period_ms, "time in-flight requests get on shutdown (ms)",
            config::InRange<int32_t>(0, 600000));
  }

  absl::Status Validate() const {
    if (nodes.empty() == dns.empty()) {
      return absl::InvalidArgumentError(
          "nodes: give either a non-empty nodes list or dns, not both");
    }
    if (nodes.size() > static_cast<size_t>(kMaxNodes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("nodes: at most ", kMaxNodes, " nodes per router, got ", nodes.size()));
    }
    return absl::OkStatus();
  }
};

}  // namespace helm::route
