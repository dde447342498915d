// Start-up shared by HELM's executables: flags (CLI11), the config file (or the embedded default),
// logging. Config and flag errors print what is wrong and exit with status 2 before any port opens.
#pragma once

#include <string>

#include "CLI/CLI.hpp"
#include "helm/config/config.h"

namespace helm::app {

// The embedded default config (configs/local.yaml, compiled in).
extern const char* const kEmbeddedConfig;

struct CommonFlags {
  std::string config_path;  // "" : the embedded default
  bool print_config = false;
  std::string log_level;    // "" : the config's log.level
};

// Adds --config, --print-config and --log-level to `cli`.
void AddCommonFlags(CLI::App& cli, CommonFlags& flags);

// Parses argv; on --help prints usage and exits 0; on a bad flag prints it and exits 2.
void ParseFlagsOrExit(CLI::App& cli, int argc, char** argv);

// Loads the config named by the flags (or the embedded default), applies `override_fn` (flags that
// override config keys), re-validates, initialises logging, handles --print-config (prints and
// exits 0). Any error: message on stderr, exit status 2.
config::Config LoadConfigOrExit(const CommonFlags& flags, const std::string& process_name,
                                const std::function<void(config::Config&)>& override_fn = {});

}  // namespace helm::app
