// Prometheus metrics: a small registry of counters, gauges and histograms with labels, rendered in
// the Prometheus text exposition format 0.0.4 (what GET /metrics answers; see exporter.h).
//
// Two kinds of metric:
//  - Instruments updated on the request path (Counter, Gauge, Histogram), held in label families:
//      metrics::Family<metrics::Counter>& requests =
//          registry.AddCounter("helm_requests_total", "Requests answered.", {"method", "status"});
//      requests.WithLabels({"Rank", "OK"}).Increment();
//    Updates are lock-free (atomics); WithLabels takes the family's mutex for a map lookup, so a
//    hot path keeps the returned reference (it stays valid for the registry's life).
//  - Collectors: metrics whose samples are read at scrape time from counters a component keeps
//    anyway (AddCollector), so that the request path does no extra work for them.
//
// Names follow Prometheus conventions (the caller's business): a `helm_` prefix, base units
// (seconds, bytes), `_total` for counters. Render lists metrics in registration order and each
// metric's samples by label values. Label values are escaped (backslash, double quote, newline);
// numbers are written in their shortest round-trip form ("3", "0.25", "+Inf").
//
// Thread-safety: all methods are thread-safe. Collectors run on the thread that calls Render, with
// no registry lock held; what a collector reads must outlive the last Render (stop the exporter
// before destroying what collectors read).
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace helm::metrics {

// One value per label name, in the family's label order.
using LabelValues = std::vector<std::string>;

// A monotonically increasing value.
class Counter {
 public:
  // REQUIRES: by >= 0.
  void Increment(double by = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in buckets with fixed upper bounds (each bucket counts the values <= its
// bound and above the previous one; Render writes them cumulative, plus +Inf, _sum and _count).
class Histogram {
 public:
  // REQUIRES: `bounds` strictly increasing and finite.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then the +Inf bucket (== count).
  std::vector<uint64_t> CumulativeCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const;

 private:
  const std::vector<double> bounds_;
  // One per bound plus the overflow bucket, not cumulative.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

// Buckets for latencies in seconds: 0.5 ms to 10 s.
std::vector<double> LatencyBucketsSeconds();
// 1, 2, 4, ... `max` (powers of two).
std::vector<double> PowerOfTwoBuckets(double max);

// The metrics of one name: one instrument per combination of label values.
template <class T>
class Family {
 public:
  // The instrument for `values`, created at first use. REQUIRES: one value per label name.
  T& WithLabels(const LabelValues& values);

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names, std::function<std::unique_ptr<T>()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}
  template <class F>
  void ForEach(F&& f) const;

  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable absl::Mutex mu_;
  std::map<LabelValues, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

enum class MetricType { kCounter, kGauge, kHistogram };

// One sample a collector reports.
struct Sample {
  LabelValues label_values;
  double value = 0;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each Add registers a metric name once (REQUIRES: a valid, unused name; valid label names).
  // The returned family lives as long as the registry.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds,
                                  std::vector<std::string> label_names = {});
  // A counter or gauge whose samples `collect` returns at each Render (REQUIRES: type is kCounter
  // or kGauge; each sample has one value per label name).
  void AddCollector(const std::string& name, const std::string& help, MetricType type,
                    std::vector<std::string> label_names,
                    std::function<std::vector<Sample>()> collect);

  // Every metric in the text exposition format 0.0.4.
  std::string Render() const;
  // The registered metric names, in registration order.
  std::vector<std::string> Names() const;

 private:
  struct Entry;
  Entry& Add(const std::string& name, const std::string& help, MetricType type,
             const std::vector<std::string>& label_names);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// The content type of Render's text.
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// ---- Implementation details -------------------------------------------------------------------

template <class T>
T& Family<T>::WithLabels(const LabelValues& values) {
  assert(values.size() == label_names_.size());
  absl::MutexLock lock(&mu_);
  std::unique_ptr<T>& child = children_[values];
  if (child == nullptr) child = make_();
  return *child;
}

template <class T>
template <class F>
void Family<T>::ForEach(F&& f) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [values, child] : children_) f(values, *child);
}

}  // namespace helm::metrics
