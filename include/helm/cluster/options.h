// Options of helm-cluster, the launcher of a local cluster (a router and N nodes on 127.0.0.1).
#pragma once

#include <cstdint>

#include "helm/config/describe.h"

namespace helm::cluster {

struct ClusterOptions {
  int32_t num_nodes = 2;
  // Ports: the router listens on router_port, node i on first_node_port + i.
  int32_t router_port = 50060;
  int32_t first_node_port = 50061;
  // Time a process gets to start and report SERVING before the launch fails (ms).
  int32_t start_timeout_ms = 30000;

  template <class V>
  void Describe(V& v) {
    v.Field("num_nodes", num_nodes, "node processes", config::InRange<int32_t>(1, 64));
    v.Field("router_port", router_port, "router port on 127.0.0.1",
            config::InRange<int32_t>(1, 65535));
    v.Field("first_node_port", first_node_port, "port of node 0; node i gets first_node_port + i",
            config::InRange<int32_t>(1, 65535));
    v.Field("start_timeout_ms", start_timeout_ms, "time to reach SERVING at start (ms)",
            config::InRange<int32_t>(100, 600000));
  }
};

}  // namespace helm::cluster
