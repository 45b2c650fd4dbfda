// LoadGen-style results of `rackctl bench`: per-request latencies measured by the client turned
// into the MLPerf figures (samples/s, generated tokens/s, TTFT/TPOT percentiles), the VALID /
// INVALID verdict against the scenario's limits, and the summary text (in the shape of MLPerf's
// mlperf_log_summary.txt) and JSON. Pure functions over plain values.
//
// TTFT: issue to first token. TPOT: (latency - TTFT) / (tokens - 1), for requests with >= 2 tokens.
// Percentiles are nearest-rank. Limits (p99): server TTFT 2 s, TPOT 200 ms; interactive TTFT
// 450 ms, TPOT 40 ms; offline none. A run is VALID when every issued sample completed and the
// p99s are within the limits.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::client {

enum class Scenario { kOffline, kServer, kInteractive };

// INVALID_ARGUMENT naming the value for anything but offline, server, interactive.
absl::StatusOr<Scenario> ParseScenario(std::string_view name);
std::string ScenarioName(Scenario scenario);  // "Offline", "Server", "Interactive"

struct LatencyLimits {
  double ttft_p99_seconds = 0;  // 0 = no limit
  double tpot_p99_seconds = 0;
};
LatencyLimits LimitsFor(Scenario scenario);

// Nearest-rank percentile, q in [0, 1]; 0 for no values.
double Percentile(std::vector<double> values, double q);

struct LatencyStats {
  int64_t count = 0;
  double min = 0, mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0;  // seconds
};
LatencyStats ComputeLatencyStats(const std::vector<double>& seconds);

// One request as the client saw it.
struct SampleRecord {
  bool completed = false;  // false: the request failed (error) or never finished
  int64_t output_tokens = 0;
  double ttft_seconds = 0;
  double latency_seconds = 0;
  std::string error;  // why it failed, when it did ("" when it completed or never returned)
};

struct BenchRun {
  Scenario scenario = Scenario::kOffline;
  double target_qps = 0;        // server / interactive
  double duration_seconds = 0;  // first issue to last completion
  std::vector<SampleRecord> samples;
};

// The rack's own figure for the run (GetStats before and after), when it could be read.
struct RackFigure {
  bool present = false;
  double tokens_per_second = 0;        // coordinator's count of delivered tokens / duration
  double batch_tokens_per_second = 0;  // the coordinator's offline job figure; 0 = none
  struct Vm {
    std::string name;
    double tokens_per_second = 0;  // the workers' reported tokens / duration
  };
  std::vector<Vm> vms;
  // The sum over replicas of their own figures: tokens they generated / seconds they had work
  // during the run (the duration less their idle seconds) — what the rack would deliver if no GPU
  // ever waited for a request; 0 when no replica reported.
  double gpus_own_tokens_per_second = 0;
  // The same tokens over the seconds the replicas' engines spent in steps: the GPUs' figure
  // without their hosts' work between steps; 0 when no replica reported busy time.
  double gpus_step_tokens_per_second = 0;
  std::string audit;  // one line: delivered vs worker-reported tokens, exact or not
};

struct BenchSummary {
  Scenario scenario = Scenario::kOffline;
  int64_t issued = 0;
  int64_t completed = 0;
  int64_t generated_tokens = 0;
  double duration_seconds = 0;
  double target_qps = 0;
  double samples_per_second = 0;  // completed samples / duration
  double tokens_per_second = 0;   // generated tokens / duration
  LatencyStats ttft, tpot, latency;
  LatencyLimits limits;
  bool ttft_ok = true, tpot_ok = true, all_completed = true;
  bool valid = false;
};

BenchSummary Summarize(const BenchRun& run);

// mlperf_log_summary.txt-shaped text: "Scenario : Offline", "Completed samples per second : ..",
// "Tokens per second : ..", "Result is : VALID", the checks, latency percentiles, and the rack's
// figure with its per-VM breakdown, min/max spread and the audit line.
std::string FormatSummary(const BenchSummary& summary, const RackFigure& rack);
// The same as one JSON object.
std::string SummaryJson(const BenchSummary& summary, const RackFigure& rack);

}  // namespace rackserve::client
