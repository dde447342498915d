// A child process: started from argv, its stdout/stderr sent to a file (or inherited), signalled
// and reaped with a timeout. Used by helm-cluster and by multi-process tests. Not thread-safe: one
// owner drives a Subprocess.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace helm {

class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is the program path
    // Where stdout and stderr go: a file (truncated) or, when empty, the parent's.
    std::string output_path;
    // Put the child in its own process group so that a terminal's Ctrl-C reaches only the parent.
    bool new_process_group = false;
  };

  // Starts the child. InvalidArgument on empty argv; Internal when fork/exec fails (an exec failure
  // shows as exit status 127).
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const Options& options);
  // Kills (SIGKILL) and reaps a child that is still running.
  ~Subprocess();

  pid_t pid() const { return pid_; }
  const std::string& output_path() const { return output_path_; }
  // Sends `signal` if the child has not been reaped.
  void Signal(int signal);
  // Waits up to `timeout` for the child to exit; its raw wait status (see WIFEXITED) or nullopt.
  std::optional<int> Wait(absl::Duration timeout);
  // True while the child has not exited (reaps it when it has).
  bool Running();
  // Reads the output file so far ("" when output is inherited).
  std::string Output() const;
  // Waits until the output contains `needle` or the child exits or `timeout` passes; returns the
  // line that contains it (without the newline), or nullopt.
  std::optional<std::string> WaitForOutput(const std::string& needle, absl::Duration timeout);

 private:
  Subprocess() = default;
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string output_path_;
};

// The exit code of a raw wait status, or 128 + signal when the process was killed by a signal.
int ExitCode(int wait_status);

// The commit checked out at `dir` (git rev-parse HEAD), or "unknown" without git or a checkout.
std::string GitRevision(const std::string& dir);

}  // namespace helm
