#include "client/loadgen_summary.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace rackserve::client {
namespace {

using Json = nlohmann::json;

std::string Ms(double seconds) { return absl::StrFormat("%.2f", seconds * 1e3); }

// "<label padded to 32>: <value>", the layout of every summary line.
void AppendLine(std::string* out, const std::string& label, const std::string& value) {
  absl::StrAppendFormat(out, "%-32s: %s\n", label, value);
}

void AppendLatencyBlock(std::string* out, const std::string& name, const LatencyStats& s) {
  AppendLine(out, absl::StrCat(name, " samples"), absl::StrCat(s.count));
  const std::pair<const char*, double> rows[] = {
      {"min", s.min}, {"mean", s.mean}, {"p50", s.p50},    {"p90", s.p90},
      {"p95", s.p95}, {"p99", s.p99},   {"p99.9", s.p999}, {"max", s.max}};
  for (const auto& [label, value] : rows) {
    AppendLine(out, absl::StrCat(name, " ", label, " (ms)"), Ms(value));
  }
}

Json LatencyJson(const LatencyStats& s) {
  return {{"count", s.count}, {"min_s", s.min},    {"mean_s", s.mean},
          {"p50_s", s.p50},   {"p90_s", s.p90},    {"p95_s", s.p95},
          {"p99_s", s.p99},   {"p99_9_s", s.p999}, {"max_s", s.max}};
}

// (max - min) / mean of the VMs' figures, in percent; 0 with fewer than two.
double SpreadPercent(const RackFigure& rack, double* min_value, double* max_value) {
  *min_value = 0;
  *max_value = 0;
  if (rack.vms.empty()) return 0;
  double sum = 0;
  *min_value = rack.vms.front().tokens_per_second;
  *max_value = *min_value;
  for (const RackFigure::Vm& vm : rack.vms) {
    *min_value = std::min(*min_value, vm.tokens_per_second);
    *max_value = std::max(*max_value, vm.tokens_per_second);
    sum += vm.tokens_per_second;
  }
  const double mean = sum / static_cast<double>(rack.vms.size());
  return mean > 0 ? 100.0 * (*max_value - *min_value) / mean : 0;
}

}  // namespace

absl::StatusOr<Scenario> ParseScenario(std::string_view name) {
  if (name == "offline") return Scenario::kOffline;
  if (name == "server") return Scenario::kServer;
  if (name == "interactive") return Scenario::kInteractive;
  return absl::InvalidArgumentError(absl::StrCat(
      "--scenario: unknown scenario \"", std::string(name), "\" (offline, server, interactive)"));
}

std::string ScenarioName(Scenario scenario) {
  switch (scenario) {
    case Scenario::kOffline:
      return "Offline";
    case Scenario::kServer:
      return "Server";
    case Scenario::kInteractive:
      return "Interactive";
  }
  return "Unknown";
}

LatencyLimits LimitsFor(Scenario scenario) {
  switch (scenario) {
    case Scenario::kOffline:
      return {};
    case Scenario::kServer:
      return {2.0, 0.2};
    case Scenario::kInteractive:
      return {0.45, 0.04};
  }
  return {};
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size()));
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

LatencyStats ComputeLatencyStats(const std::vector<double>& seconds) {
  LatencyStats s;
  s.count = static_cast<int64_t>(seconds.size());
  if (seconds.empty()) return s;
  s.min = *std::min_element(seconds.begin(), seconds.end());
  s.max = *std::max_element(seconds.begin(), seconds.end());
  s.mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / static_cast<double>(s.count);
  s.p50 = Percentile(seconds, 0.50);
  s.p90 = Percentile(seconds, 0.90);
  s.p95 = Percentile(seconds, 0.95);
  s.p99 = Percentile(seconds, 0.99);
  s.p999 = Percentile(seconds, 0.999);
  return s;
}

BenchSummary Summarize(const BenchRun& run) {
  BenchSummary s;
  s.scenario = run.scenario;
  s.issued = static_cast<int64_t>(run.samples.size());
  s.duration_seconds = run.duration_seconds;
  s.target_qps = run.target_qps;
  s.limits = LimitsFor(run.scenario);
  std::vector<double> ttft, tpot, latency;
  for (const SampleRecord& sample : run.samples) {
    if (!sample.completed) continue;
    ++s.completed;
    s.generated_tokens += sample.output_tokens;
    ttft.push_back(sample.ttft_seconds);
    latency.push_back(sample.latency_seconds);
    if (sample.output_tokens >= 2) {
      tpot.push_back((sample.latency_seconds - sample.ttft_seconds) /
                     static_cast<double>(sample.output_tokens - 1));
    }
  }
  s.ttft = ComputeLatencyStats(ttft);
  s.tpot = ComputeLatencyStats(tpot);
  s.latency = ComputeLatencyStats(latency);
  if (run.duration_seconds > 0) {
    s.samples_per_second = static_cast<double>(s.completed) / run.duration_seconds;
    s.tokens_per_second = static_cast<double>(s.generated_tokens) / run.duration_seconds;
  }
  s.all_completed = s.completed == s.issued && s.issued > 0;
  s.ttft_ok = s.limits.ttft_p99_seconds <= 0 || s.ttft.p99 <= s.limits.ttft_p99_seconds;
  s.tpot_ok = s.limits.tpot_p99_seconds <= 0 || s.tpot.p99 <= s.limits.tpot_p99_seconds;
  s.valid = s.all_completed && s.ttft_ok && s.tpot_ok;
  return s;
}

std::string FormatSummary(const BenchSummary& s, const RackFigure& rack) {
  const char* kRule = "================================================\n";
  std::string out;
  absl::StrAppend(&out, kRule, "rackserve LoadGen-style Results Summary\n", kRule);
  absl::StrAppend(&out, "SUT name : rackserve\n");
  absl::StrAppend(&out, "Scenario : ", ScenarioName(s.scenario), "\n");
  absl::StrAppend(&out, "Mode     : PerformanceOnly\n");
  AppendLine(&out, "Completed samples per second", absl::StrFormat("%.2f", s.samples_per_second));
  AppendLine(&out, "Tokens per second", absl::StrFormat("%.2f", s.tokens_per_second));
  absl::StrAppend(&out, "Result is : ", s.valid ? "VALID" : "INVALID", "\n");
  AppendLine(
      &out, "  Every sample completed",
      absl::StrFormat("%s (%d of %d)", s.all_completed ? "Yes" : "NO", s.completed, s.issued));
  if (s.limits.ttft_p99_seconds > 0) {
    AppendLine(&out, absl::StrCat("  TTFT p99 <= ", Ms(s.limits.ttft_p99_seconds), " ms"),
               absl::StrCat(s.ttft_ok ? "Yes" : "NO", " (", Ms(s.ttft.p99), " ms)"));
    AppendLine(&out, absl::StrCat("  TPOT p99 <= ", Ms(s.limits.tpot_p99_seconds), " ms"),
               absl::StrCat(s.tpot_ok ? "Yes" : "NO", " (", Ms(s.tpot.p99), " ms)"));
  }
  absl::StrAppend(&out, "\n", kRule, "Additional Stats\n", kRule);
  AppendLine(&out, "Samples issued", absl::StrCat(s.issued));
  AppendLine(&out, "Generated tokens", absl::StrCat(s.generated_tokens));
  AppendLine(&out, "Duration (s)", absl::StrFormat("%.3f", s.duration_seconds));
  if (s.target_qps > 0) {
    AppendLine(&out, "Target QPS (Poisson)", absl::StrFormat("%.3f", s.target_qps));
  }
  AppendLatencyBlock(&out, "TTFT", s.ttft);
  AppendLatencyBlock(&out, "TPOT", s.tpot);
  AppendLatencyBlock(&out, "Latency", s.latency);
  absl::StrAppend(&out, "\n", kRule, "Rack (coordinator figures)\n", kRule);
  if (!rack.present) {
    absl::StrAppend(&out, "(GetStats could not be read)\n");
    return out;
  }
  AppendLine(&out, "Rack tokens per second", absl::StrFormat("%.2f", rack.tokens_per_second));
  if (rack.batch_tokens_per_second > 0) {
    AppendLine(
        &out, "Rack batch tokens per second",
        absl::StrFormat("%.2f (the coordinator's job figure)", rack.batch_tokens_per_second));
  }
  for (const RackFigure::Vm& vm : rack.vms) {
    AppendLine(&out, absl::StrFormat("  %-8s tokens per second", vm.name),
               absl::StrFormat("%.2f", vm.tokens_per_second));
  }
  double min_value = 0, max_value = 0;
  const double spread = SpreadPercent(rack, &min_value, &max_value);
  AppendLine(&out, "Per-VM min / max (spread)",
             absl::StrFormat("%.2f / %.2f (%.1f%%)", min_value, max_value, spread));
  if (rack.gpus_own_tokens_per_second > 0) {
    AppendLine(&out, "Sum of the GPUs' own figures",
               absl::StrFormat("%.2f (time with work; the rack reached %.1f%% of it)",
                               rack.gpus_own_tokens_per_second,
                               100 * rack.tokens_per_second / rack.gpus_own_tokens_per_second));
  }
  if (rack.gpus_step_tokens_per_second > 0) {
    AppendLine(
        &out, "Sum of the GPUs' step figures",
        absl::StrFormat("%.2f (time in engine steps only)", rack.gpus_step_tokens_per_second));
  }
  AppendLine(&out, "Audit", rack.audit);
  return out;
}

std::string SummaryJson(const BenchSummary& s, const RackFigure& rack) {
  Json out = {
      {"scenario", ScenarioName(s.scenario)},
      {"result", s.valid ? "VALID" : "INVALID"},
      {"samples_issued", s.issued},
      {"samples_completed", s.completed},
      {"generated_tokens", s.generated_tokens},
      {"duration_s", s.duration_seconds},
      {"target_qps", s.target_qps},
      {"completed_samples_per_second", s.samples_per_second},
      {"tokens_per_second", s.tokens_per_second},
      {"limits",
       {{"ttft_p99_s", s.limits.ttft_p99_seconds}, {"tpot_p99_s", s.limits.tpot_p99_seconds}}},
      {"ttft", LatencyJson(s.ttft)},
      {"tpot", LatencyJson(s.tpot)},
      {"latency", LatencyJson(s.latency)}};
  if (rack.present) {
    Json vms = Json::array();
    for (const RackFigure::Vm& vm : rack.vms) {
      vms.push_back({{"name", vm.name}, {"tokens_per_second", vm.tokens_per_second}});
    }
    double min_value = 0, max_value = 0;
    const double spread = SpreadPercent(rack, &min_value, &max_value);
    out["rack"] = {{"tokens_per_second", rack.tokens_per_second},
                   {"batch_tokens_per_second", rack.batch_tokens_per_second},
                   {"vms", vms},
                   {"vm_min_tokens_per_second", min_value},
                   {"vm_max_tokens_per_second", max_value},
                   {"vm_spread_percent", spread},
                   {"gpus_own_tokens_per_second", rack.gpus_own_tokens_per_second},
                   {"gpus_step_tokens_per_second", rack.gpus_step_tokens_per_second},
                   {"audit", rack.audit}};
  }
  return out.dump(2);
}

}  // namespace rackserve::client
