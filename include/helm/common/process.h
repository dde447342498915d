// Process-wide runtime settings every HELM binary applies first thing in main (tests do not:
// they keep the checks below).
//
// absl::Mutex deadlock detection is on in builds of Abseil without NDEBUG, Debian's among them:
// every Mutex::Lock then records the lock order in one global graph under one global lock (seen as
// GraphCycles::GetId in profiles of helm-router and helm-node). Serving, simulating and
// benchmarking binaries turn it off; the unit tests keep it, so a lock-order cycle still fails
// them.
#pragma once

#include "absl/synchronization/mutex.h"

namespace helm {

inline void ConfigureProcess() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace helm
