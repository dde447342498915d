// Status helpers shared by every component.
//
// The Abseil in Debian 12 (20220623) has neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN; these are
// the project's single definitions of both. Thread-safe: they are expressions over local values.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HELM_STATUS_CONCAT_INNER_(a, b) a##b
#define HELM_STATUS_CONCAT_(a, b) HELM_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function when not OK.
#define HELM_RETURN_IF_ERROR(expr)                   \
  do {                                               \
    ::absl::Status helm_status_ = (expr);            \
    if (!helm_status_.ok()) return helm_status_;     \
  } while (false)

// `HELM_ASSIGN_OR_RETURN(auto x, Foo());` evaluates `Foo()` (an absl::StatusOr<T>); on error returns
// its status from the enclosing function, else moves the value into the declaration `lhs`.
#define HELM_ASSIGN_OR_RETURN(lhs, expr) \
  HELM_ASSIGN_OR_RETURN_IMPL_(HELM_STATUS_CONCAT_(helm_statusor_, __LINE__), lhs, expr)
#define HELM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()
