// Fuzz entry points: one plain function per target, each taking arbitrary bytes. They are linked
// both by the libFuzzer drivers (libfuzzer_main.cc, `make fuzz`, clang only) and by the replay
// test (replay_test.cc, any compiler, `make test`), which feeds them the committed corpus seeds
// and every crash ever found (tests/fuzz_regressions/<target>/).
//
// Contract of every entry: returns 0 for any input; malformed input must come back as an error
// status from the code under test, never as a crash, a leak, undefined behaviour or an uncaught
// exception. An entry also checks what the code under test promises about accepted input and
// aborts (HELM_FUZZ_CHECK) when a promise is broken.
//
// Thread-compatible: entries keep no state between calls (the node-state target builds a fresh
// ClusterState per input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/types/span.h"

namespace helm::fuzz {

using FuzzEntry = int (*)(const uint8_t* data, size_t size);

struct FuzzTarget {
  const char* name;  // the corpus folder name: fuzz/corpus/<name>, tests/fuzz_regressions/<name>
  FuzzEntry entry;
};

// A RankRequest parsed from the bytes (protobuf wire format), then the node's validation
// (serve::ValidateRankRequest); an accepted request must satisfy every rule it documents.
int FuzzRankRequest(const uint8_t* data, size_t size);
// The bytes as YAML config text (config::ParseConfig).
int FuzzConfig(const uint8_t* data, size_t size);
// The bytes as a safetensors weights file for a small fixed model (model::Weights::Load); an
// accepted file's tensors are read in full.
int FuzzSafetensors(const uint8_t* data, size_t size);
// The bytes as a .npy embedding table of 4 x 3 (emb::HostTable::OpenNpy, each dtype); an
// accepted table's rows are read in full.
int FuzzNpy(const uint8_t* data, size_t size);
// The bytes as a trace CSV (workload::ParseTrace); accepted events must be in range.
int FuzzTraceCsv(const uint8_t* data, size_t size);
// The bytes as a sequence of NodeState messages for up to 4 nodes (router::ToNodeUpdate, then
// route::ClusterState::ApplyUpdate), followed by the per-request queries.
int FuzzNodeState(const uint8_t* data, size_t size);

// Every target above, by name.
absl::Span<const FuzzTarget> AllTargets();

}  // namespace helm::fuzz

// Aborts with the failed condition: a broken promise of the code under test.
#define HELM_FUZZ_CHECK(cond)                                                                 \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: HELM_FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (false)
