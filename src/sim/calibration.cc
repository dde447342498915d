#include "helm/sim/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace helm::sim {

std::vector<double> RelativeNnls(const std::vector<std::vector<double>>& x,
                                 const std::vector<double>& y) {
  const size_t k = x.empty() ? 0 : x[0].size();
  std::vector<bool> active(k, true);
  std::vector<double> a(k, 0.0);
  for (size_t round = 0; round <= k; ++round) {
    std::vector<size_t> idx;
    for (size_t j = 0; j < k; ++j)
      if (active[j]) idx.push_back(j);
    const size_t m = idx.size();
    if (m == 0) break;
    // Normal equations (A^T A) a = A^T b with A = X / y, b = 1.
    std::vector<std::vector<double>> n(m, std::vector<double>(m + 1, 0.0));
    for (size_t i = 0; i < y.size(); ++i) {
      for (size_t p = 0; p < m; ++p) {
        const double xp = x[i][idx[p]] / y[i];
        for (size_t q = 0; q < m; ++q) n[p][q] += xp * x[i][idx[q]] / y[i];
        n[p][m] += xp;
      }
    }
    // Gaussian elimination with partial pivoting; scale columns first (features differ by 1e12).
    std::vector<double> scale(m, 1.0);
    for (size_t p = 0; p < m; ++p) scale[p] = n[p][p] > 0 ? 1.0 / std::sqrt(n[p][p]) : 1.0;
    for (size_t p = 0; p < m; ++p) {
      for (size_t q = 0; q < m; ++q) n[p][q] *= scale[p] * scale[q];
      n[p][m] *= scale[p];
    }
    for (size_t c = 0; c < m; ++c) {
      size_t piv = c;
      for (size_t r = c + 1; r < m; ++r)
        if (std::abs(n[r][c]) > std::abs(n[piv][c])) piv = r;
      std::swap(n[c], n[piv]);
      if (std::abs(n[c][c]) < 1e-12) continue;
      for (size_t r = 0; r < m; ++r) {
        if (r == c) continue;
        const double f = n[r][c] / n[c][c];
        for (size_t q = c; q <= m; ++q) n[r][q] -= f * n[c][q];
      }
    }
    std::fill(a.begin(), a.end(), 0.0);
    bool negative = false;
    size_t worst = 0;
    double worst_v = 0.0;
    for (size_t p = 0; p < m; ++p) {
      const double v = std::abs(n[p][p]) < 1e-12 ? 0.0 : n[p][m] / n[p][p] * scale[p];
      a[idx[p]] = v;
      if (v < worst_v) {
        worst_v = v;
        worst = idx[p];
        negative = true;
      }
    }
    if (!negative) break;
    active[worst] = false;
  }
  for (double& v : a) v = std::max(v, 0.0);
  return a;
}

absl::Status WriteCalibration(const std::string& path, const CostProfile& profile,
                              const CalibrationNotes& notes) {
  if (absl::Status s = ValidateProfile(profile); !s.ok()) return s;
  std::string date = notes.date;
  if (date.empty()) {
    char buf[64];
    const std::time_t now = std::time(nullptr);
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    date = buf;
  }
  // The notes are free text: keep them valid JSON strings.
  auto text = [](const std::string& s) {
    return absl::StrReplaceAll(s, {{"\\", "/"}, {"\"", "'"}, {"\n", " "}});
  };
  const CostProfile& p = profile;
  std::string out = "{\n";
  absl::StrAppendFormat(&out, "  \"base\": \"%s\",\n", text(notes.base));
  absl::StrAppendFormat(&out, "  \"machine\": \"%s\",\n", text(notes.machine));
  absl::StrAppendFormat(&out, "  \"date\": \"%s\",\n", text(date));
  absl::StrAppendFormat(&out, "  \"method\": \"%s\",\n", text(notes.method));
  for (const auto& [key, rate] :
       {std::pair<const char*, double>{"dense_flops_per_s", p.effective_dense_flops_per_s()},
        {"attention_flops_per_s", p.effective_attention_flops_per_s()},
        {"memory_bytes_per_s", p.effective_memory_bytes_per_s()},
        {"gather_bytes_per_s", p.effective_gather_bytes_per_s()}}) {
    const std::string efficiency =
        absl::StrReplaceAll(key, {{"flops_per_s", "efficiency"}, {"bytes_per_s", "efficiency"}});
    absl::StrAppendFormat(&out, "  \"%s\": %.6g,\n  \"%s\": 1.0,\n", key, rate, efficiency);
  }
  absl::StrAppendFormat(&out, "  \"pcie_bytes_per_s\": %.6g,\n", p.pcie_bytes_per_s);
  absl::StrAppendFormat(&out, "  \"pcie_latency_us\": %.6g,\n", p.pcie_latency_us);
  if (p.host_gather_bytes_per_s > 0) {
    absl::StrAppendFormat(&out, "  \"host_gather_bytes_per_s\": %.6g,\n",
                          p.host_gather_bytes_per_s);
  }
  absl::StrAppendFormat(&out, "  \"kernel_launch_us\": %.6g,\n", p.kernel_launch_us);
  absl::StrAppendFormat(&out, "  \"batch_fixed_us\": %.6g,\n", p.batch_fixed_us);
  absl::StrAppendFormat(&out, "  \"attention_query_tile\": %d,\n", p.attention_query_tile);
  absl::StrAppendFormat(&out, "  \"on_device\": %s", p.on_device ? "true" : "false");
  if (!p.service_ratio_quantiles.empty()) {
    out += ",\n  \"service_ratio_quantiles\": [";
    for (size_t i = 0; i < p.service_ratio_quantiles.size(); ++i) {
      absl::StrAppendFormat(&out, "%s[%.9g, %.6g]", i == 0 ? "" : ", ",
                            p.service_ratio_quantiles[i].first,
                            p.service_ratio_quantiles[i].second);
    }
    out += "]";
  }
  out += "\n}\n";
  {
    std::ofstream f(path);
    if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write '", path, "'"));
    f << out;
    if (!f) return absl::DataLossError(absl::StrCat("error writing '", path, "'"));
  }
  return LoadCalibration(path).status();
}

}  // namespace helm::sim
