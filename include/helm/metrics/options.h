// Options of the Prometheus /metrics endpoint of helm-node and helm-router (the `metrics` section).
#pragma once

#include <cstdint>
#include <string>

#include "helm/config/describe.h"

namespace helm::metrics {

struct MetricsOptions {
  // Address the HTTP endpoint binds (127.0.0.1: this host only; 0.0.0.0: every interface).
  std::string address = "127.0.0.1";
  // helm-node's /metrics port: 0 off, -1 any free port (logged and printed as "METRICS <port>").
  // helm-cluster gives node i node_port + i.
  int32_t node_port = 0;
  // helm-router's /metrics port: 0 off, -1 any free port.
  int32_t router_port = 0;

  template <class V>
  void Describe(V& v) {
    v.Field("address", address, "address the /metrics HTTP endpoint binds", config::NotEmpty());
    v.Field("node_port", node_port,
            "helm-node /metrics port (0: off, -1: any free port; helm-cluster: node i gets +i)",
            config::InRange<int32_t>(-1, 65535));
    v.Field("router_port", router_port, "helm-router /metrics port (0: off, -1: any free port)",
            config::InRange<int32_t>(-1, 65535));
  }
};

}  // namespace helm::metrics
