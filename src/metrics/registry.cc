#include "helm/metrics/registry.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace helm::metrics {
namespace {

void AtomicAdd(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

[[maybe_unused]] bool ValidName(const std::string& name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Shortest text that parses back to the same double; Prometheus spellings of the specials.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof(buffer), v);
  return std::string(buffer, r.ptr);
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} with an optional extra label (le for histogram buckets); "" with no labels.
std::string LabelText(const std::vector<std::string>& names, const LabelValues& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "{" : ",", names[i], "=\"", EscapeLabelValue(values[i]),
                    "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&out, out.empty() ? "{" : ",", extra_name, "=\"", extra_value, "\"");
  }
  if (!out.empty()) out += "}";
  return out;
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void Counter::Increment(double by) {
  assert(by >= 0);
  AtomicAdd(value_, by);
}

void Gauge::Add(double delta) { AtomicAdd(value_, delta); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    assert(std::isfinite(bounds_[i]));
    assert(i == 0 || bounds_[i] > bounds_[i - 1]);
  }
}

void Histogram::Observe(double value) {
  // Buckets are few (about 15): a linear scan beats a binary search's branches.
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

uint64_t Histogram::count() const { return CumulativeCounts().back(); }

std::vector<double> LatencyBucketsSeconds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> PowerOfTwoBuckets(double max) {
  std::vector<double> out;
  for (double b = 1; b <= max; b *= 2) out.push_back(b);
  return out;
}

struct Registry::Entry {
  std::string name;
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<std::string> label_names;
  // One of: an instrument family, or a collector.
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  std::function<std::vector<Sample>()> collect;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::Add(const std::string& name, const std::string& help, MetricType type,
                               const std::vector<std::string>& label_names) {
  assert(ValidName(name, /*allow_colon=*/true));
  for (const std::string& label : label_names) {
    assert(ValidName(label, /*allow_colon=*/false) && label.rfind("__", 0) != 0 && label != "le");
    (void)label;
  }
  auto entry = std::make_unique<Entry>();
  entry->name = name;
  entry->help = help;
  entry->type = type;
  entry->label_names = label_names;
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    assert(e->name != name);
    (void)e;
  }
  entries_.push_back(std::move(entry));
  return *entries_.back();
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  Entry& e = Add(name, help, MetricType::kCounter, label_names);
  e.counters.reset(
      new Family<Counter>(std::move(label_names), [] { return std::make_unique<Counter>(); }));
  return *e.counters;
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  Entry& e = Add(name, help, MetricType::kGauge, label_names);
  e.gauges.reset(
      new Family<Gauge>(std::move(label_names), [] { return std::make_unique<Gauge>(); }));
  return *e.gauges;
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> bounds,
                                          std::vector<std::string> label_names) {
  Entry& e = Add(name, help, MetricType::kHistogram, label_names);
  e.histograms.reset(new Family<Histogram>(
      std::move(label_names), [bounds] { return std::make_unique<Histogram>(bounds); }));
  return *e.histograms;
}

void Registry::AddCollector(const std::string& name, const std::string& help, MetricType type,
                            std::vector<std::string> label_names,
                            std::function<std::vector<Sample>()> collect) {
  assert(type != MetricType::kHistogram);
  Entry& e = Add(name, help, type, label_names);
  e.collect = std::move(collect);
}

std::vector<std::string> Registry::Names() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& e : entries_) names.push_back(e->name);
  return names;
}

std::string Registry::Render() const {
  std::vector<const Entry*> entries;
  {
    // Entries are never removed, so their addresses stay valid once the lock is released.
    absl::MutexLock lock(&mu_);
    for (const auto& e : entries_) entries.push_back(e.get());
  }
  std::string out;
  for (const Entry* e : entries) {
    absl::StrAppend(&out, "# HELP ", e->name, " ", EscapeHelp(e->help), "\n# TYPE ", e->name, " ",
                    TypeName(e->type), "\n");
    auto line = [&](const LabelValues& values, double value) {
      absl::StrAppend(&out, e->name, LabelText(e->label_names, values), " ", FormatValue(value),
                      "\n");
    };
    if (e->counters != nullptr) {
      e->counters->ForEach([&](const LabelValues& v, const Counter& c) { line(v, c.value()); });
    } else if (e->gauges != nullptr) {
      e->gauges->ForEach([&](const LabelValues& v, const Gauge& g) { line(v, g.value()); });
    } else if (e->histograms != nullptr) {
      e->histograms->ForEach([&](const LabelValues& v, const Histogram& h) {
        const std::vector<uint64_t> counts = h.CumulativeCounts();
        for (size_t i = 0; i < counts.size(); ++i) {
          const std::string le = i < h.bounds().size() ? FormatValue(h.bounds()[i]) : "+Inf";
          absl::StrAppend(&out, e->name, "_bucket", LabelText(e->label_names, v, "le", le), " ",
                          counts[i], "\n");
        }
        const std::string labels = LabelText(e->label_names, v);
        absl::StrAppend(&out, e->name, "_sum", labels, " ", FormatValue(h.sum()), "\n", e->name,
                        "_count", labels, " ", counts.back(), "\n");
      });
    } else if (e->collect) {
      std::vector<Sample> samples = e->collect();
      std::sort(samples.begin(), samples.end(),
                [](const Sample& a, const Sample& b) { return a.label_values < b.label_values; });
      for (const Sample& s : samples) {
        assert(s.label_values.size() == e->label_names.size());
        line(s.label_values, s.value);
      }
    }
  }
  return out;
}

}  // namespace helm::metrics
