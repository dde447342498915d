#include "helm/common/logging.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace helm {

absl::Status InitLogging(const std::string& level, const std::string& process_name) {
  const spdlog::level::level_enum parsed = spdlog::level::from_str(level);
  // from_str maps anything unknown to "off"; only accept "off" when it was asked for.
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "log level: must be one of trace, debug, info, warn, error, critical, off; got '", level,
        "'"));
  }
  spdlog::set_level(parsed);
  spdlog::set_pattern(absl::StrCat("[%H:%M:%S.%e] [%^%l%$] [", process_name, "] %v"));
  return absl::OkStatus();
}

}  // namespace helm
