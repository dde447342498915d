// The worker threads of a node: each pulls a ready batch from a NodeCore's queue and runs it,
// and sleeps until the next batch is due (or Notify says a job arrived) when none is ready. The
// edge of helm-node (NodeServer) and the single-process benchmark both run the core this way.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "helm/serve/node_core.h"

namespace helm::serve {

class BatchWorkers {
 public:
  // Starts `count` threads over `core` (not owned; must outlive this), each with its own Worker.
  // The threads sleep in real time until the core's clock says a batch is due, so the core's clock
  // must move in real time.
  static absl::StatusOr<std::unique_ptr<BatchWorkers>> Start(NodeCore* core, int count);
  // Stops (see Stop).
  ~BatchWorkers();

  // Submits `job` to the core and wakes a worker. Errors as NodeCore::Submit.
  absl::Status Submit(RankJob* job);
  // Lets running batches finish and joins the threads; queued jobs stay queued (NodeCore::Stop
  // answers them). Idempotent.
  void Stop();

 private:
  explicit BatchWorkers(NodeCore* core) : core_(core) {}
  void Loop(int worker);

  NodeCore* const core_;
  std::vector<std::unique_ptr<Worker>> workers_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace helm::serve
