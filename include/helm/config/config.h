// The whole configuration of a HELM process: one YAML file, parsed once at start into typed,
// validated options structs, one per component.
//
// Errors name the key path and what is allowed ("pool.chunk_bytes: must be a power of two >=
// 65536, got 1000"); an unknown key is an error ("unknown key 'pool.chunk_byte'"). Processes exit
// with status 2 on a config error, before opening any port. Thread-compatible value types.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "helm/cluster/options.h"
#include "helm/config/describe.h"
#include "helm/control/options.h"
#include "helm/emb/options.h"
#include "helm/kv/options.h"
#include "helm/metrics/options.h"
#include "helm/model/options.h"
#include "helm/pool/options.h"
#include "helm/route/options.h"
#include "helm/rpc/options.h"
#include "helm/serve/options.h"
#include "helm/sim/options.h"
#include "helm/workload/options.h"

namespace helm::config {

struct LogOptions {
  // spdlog level: trace, debug, info, warn, error, critical, off.
  std::string level = "info";

  template <class V>
  void Describe(V& v) {
    v.Field("level", level, "log level",
            OneOf({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  }
};

struct Config {
  LogOptions log;
  serve::NodeOptions node;
  pool::PoolOptions pool;
  emb::EmbOptions emb;
  kv::KvOptions kv;
  model::ModelOptions model;
  route::RouterOptions router;
  cluster::ClusterOptions cluster;
  workload::WorkloadOptions workload;
  control::ControlOptions control;
  sim::SimulatorOptions simulator;
  metrics::MetricsOptions metrics;
  rpc::GrpcOptions grpc;

  template <class V>
  void Describe(V& v) {
    v.Section("log", log, "logging");
    v.Section("node", node, "serving node (helm-node)");
    v.Section("pool", pool, "unified HBM pool shared by the EMB and KV caches");
    v.Section("emb", emb, "embedding hot cache and host item table");
    v.Section("kv", kv, "paged KV cache");
    v.Section("model", model, "HSTU model");
    v.Section("router", router, "front router (helm-router)");
    v.Section("cluster", cluster, "local cluster launcher (helm-cluster)");
    v.Section("workload", workload, "workload generator (helm-bench, simulator)");
    v.Section("control", control, "split controller (what moves the EMB:KV split)");
    v.Section("simulator", simulator, "discrete-event simulator");
    v.Section("metrics", metrics, "Prometheus /metrics endpoints of helm-node and helm-router");
    v.Section("grpc", grpc, "gRPC server resource bounds (message size, ResourceQuota)");
  }

  // Checks that span components (e.g. a KV block must fit in a pool chunk).
  absl::Status Validate() const;
};

// Parses YAML text into a Config: absent keys keep their defaults; every value is checked.
// `source` names the text in error messages (a file path, "<embedded>").
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& source);

// Reads and parses a YAML file. NotFound when it cannot be read. `settings` (the --set flag of
// every binary) are applied to the file's text first (ApplySettings).
absl::StatusOr<Config> LoadConfigFile(const std::string& path,
                                      const std::vector<std::string>& settings = {});

// Settings "section.key=value" applied to YAML text as if it said so, in order: the value is read
// as YAML (0.05, true, predictive, [heuristic, oracle]) and replaces whatever the text had there;
// sections on the way are created. The result is parsed as any config is, so an unknown key or a
// bad value is named. InvalidArgument naming the setting when it has no '=', an empty key or
// section name, a value that is not YAML, or a path through a key that is not a section.
absl::StatusOr<std::string> ApplySettings(const std::string& yaml_text,
                                          const std::vector<std::string>& settings);

// The effective config as YAML, every key present, each with its documentation as a comment.
std::string ConfigToYaml(const Config& config);

// Bytes of one KV block for a model and KV options (all layers, K and V); 0 when kv.dtype is not a
// dtype name.
int64_t KvBlockBytes(const model::ModelOptions& model, const kv::KvOptions& kv);

// Checks config.workload against the serving sections of the same config (item ids below
// emb.num_items, histories and candidates within the node's caps, actions within the model's), so
// that the nodes accept every request, and fills the caps left at 0 from them. "" or what is wrong,
// naming the keys.
std::string FitWorkloadToNodes(Config& config);

}  // namespace helm::config
