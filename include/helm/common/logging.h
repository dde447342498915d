// Logging through spdlog's default logger. main() calls InitLogging once; libraries log with
// spdlog::info/warn/error where an error is handled (once), never in hot loops or kernels.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/fmt/fmt.h"

namespace helm {

// Sets the default logger's level and pattern ("[time] [level] [process] message").
// `level`: trace, debug, info, warn, error, critical, off. InvalidArgument names a bad level.
absl::Status InitLogging(const std::string& level, const std::string& process_name);

}  // namespace helm

// Debian's Abseil has its own string_view (not std::string_view): teach fmt (and so spdlog) to
// print it, and to print an absl::Status as "CODE: message".
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(const absl::Status& status, Context& ctx) const {
    const std::string text = status.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};
