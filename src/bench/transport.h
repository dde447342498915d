// The seam between the open-loop core (open_loop.h) and the wire: a Transport sends one Rank
// request and reports how it ended. The gRPC edge (grpc_transport.h) implements it with gRPC's
// callback API; tests implement it with a fake server that answers on a FakeClock.
//
// Thread-safety: a Transport is called from the core's one sending thread (Prepare, Send,
// CancelAll); `done` callbacks may run on any thread, concurrently with each other and with Send.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "bench/stats.h"
#include "helm/workload/generator.h"

namespace helm::bench {

// How a request ended, as the core records it. The codes are the canonical ones (numerically
// equal to gRPC's): OK, DEADLINE_EXCEEDED when the deadline passed, CANCELLED after CancelAll, or
// whatever the server answered.
struct Reply {
  absl::Status status;
  // From the reply's serving info; empty / 0 when the reply carried none or on error.
  std::string node_id;
  ReplyInfo info;
};

// A request encoded for the wire ahead of its scheduled time, so that sending it is cheap and
// punctual. Opaque to the core; destroying one unsent is how a dropped request is discarded.
class PreparedRequest {
 public:
  virtual ~PreparedRequest() = default;
};

class Transport {
 public:
  using Done = std::function<void(const Reply&)>;

  virtual ~Transport() = default;

  // Encodes `request` (its spans need to stay valid only during the call). Never null.
  virtual std::unique_ptr<PreparedRequest> Prepare(const workload::Request& request) = 0;

  // Sends a request made by this transport's Prepare, never waiting for the reply. `deadline_us`
  // is absolute, on the core's Clock: the request must end (DEADLINE_EXCEEDED at the latest) by
  // then. `done` is called exactly once, on any thread, possibly before Send returns.
  virtual void Send(std::unique_ptr<PreparedRequest> request, int64_t deadline_us, Done done) = 0;

  // Ends every request still outstanding as soon as possible; each still reports through its
  // `done` (usually CANCELLED). Used once, for stragglers the server never answers.
  virtual void CancelAll() = 0;
};

}  // namespace helm::bench
