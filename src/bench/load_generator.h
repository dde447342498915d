// The open-loop load generator behind helm-bench.
//
// Requests from a workload::Generator are sent at their scheduled times whatever the server does
// (open loop): the sender never waits for a reply, so a slow server cannot slow the offered load
// down, and latency counts from the scheduled time, so queueing anywhere (in the sender, the
// network, the router or the node) shows in the figures (no coordinated omission). A request that
// falls due while `max_in_flight` requests are outstanding is dropped and counted as an error
// (code DROPPED), never delayed. Rank calls use gRPC's callback API, so one sending thread drives
// hundreds of requests per second; replies are recorded on gRPC's threads.
//
// This is the edge: the schedule, admission, deadlines and accounting are the open-loop core's
// (open_loop.h, tested on a fake clock); here it is wired to gRPC (grpc_transport.h), to a
// RealSleeper, to the node poller and to the progress line.
//
// Meanwhile a poller calls helm.v1.Node/GetStats on each node about once a second (split and
// cache counters over time), and a progress line is printed about once a second.
//
// Thread-safety: Run() is called once, from one thread; the object is not otherwise shared.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/stats.h"
#include "helm/common/clock.h"
#include "helm/config/config.h"
#include "helm/rpc/security.h"
#include "helm/workload/generator.h"

namespace helm::bench {

struct LoadOptions {
  std::string target;              // host:port of the router or a node (helm.v1.Recommender)
  std::vector<std::string> nodes;  // host:port of nodes to poll with GetStats (may be empty)
  double slo_ms = 80.0;            // for the progress line (the report takes it separately)
  int32_t deadline_ms = 1000;      // per request, from its scheduled time
  int32_t max_in_flight = 512;
  int32_t top_k = 10;
  int64_t poll_interval_ms = 1000;
  int64_t progress_interval_ms = 1000;
  // Where the progress line goes (nullptr: nowhere). In place ('\r') when `progress_in_place`,
  // else one line per update.
  std::FILE* progress = nullptr;
  bool progress_in_place = false;
  // How long to wait for the target to accept a connection before failing the run (ms).
  int64_t connect_timeout_ms = 5000;
  // TLS of the channels to the target and the nodes (default plaintext; app::ClientSecurityOrExit
  // gives grpc.tls's).
  rpc::ChannelSecurity security;
  // Time source for measurements. Must advance on its own (the sender sleeps in real time, through
  // a RealSleeper); fake-clock runs use OpenLoop with a fake transport instead.
  Clock* clock = Clock::Real();
};

class LoadGenerator {
 public:
  // InvalidArgument on bad options (empty target, non-positive limits).
  static absl::StatusOr<std::unique_ptr<LoadGenerator>> Create(
      const LoadOptions& options, std::unique_ptr<workload::Generator> generator);
  ~LoadGenerator();

  // Runs the whole schedule, waits for every outstanding request (each ends by its deadline; any
  // still pending after deadline + 5 s is cancelled), polls the nodes one last time and returns
  // what was measured. Unavailable when the target cannot be reached within connect_timeout_ms
  // before the run starts. Call once.
  absl::StatusOr<RunResult> Run();

 private:
  LoadGenerator(const LoadOptions& options, std::unique_ptr<workload::Generator> generator);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace helm::bench
