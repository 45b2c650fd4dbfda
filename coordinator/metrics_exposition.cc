#include "coordinator/metrics_exposition.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

constexpr int kExportEveryNthBound = 16;

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

// Writes one family's text: its HELP and TYPE lines, then its samples.
class FamilyWriter {
 public:
  FamilyWriter(std::string* out, const std::string& name, const std::string& type,
               const std::string& help)
      : out_(out), name_(name) {
    absl::StrAppend(out_, "# HELP ", name_, " ", help, "\n# TYPE ", name_, " ", type, "\n");
  }
  void Sample(const std::string& suffix, const Labels& labels, double value) {
    std::string line = name_ + suffix;
    if (!labels.empty()) {
      line += "{";
      for (size_t i = 0; i < labels.size(); ++i) {
        absl::StrAppend(&line, i == 0 ? "" : ",", labels[i].first, "=\"",
                        EscapeLabelValue(labels[i].second), "\"");
      }
      line += "}";
    }
    absl::StrAppend(out_, line, " ", FormatValue(value), "\n");
  }
  void Sample(const Labels& labels, double value) { Sample("", labels, value); }

 private:
  std::string* out_;
  std::string name_;
};

// One token counter family over every scope of the rack.
void WriteTokenFamily(std::string* out, const std::string& name, const std::string& help,
                      const v1::RackStats& stats, bool generated) {
  FamilyWriter family(out, name, "counter", help);
  auto total = [generated](const v1::Throughput& t) {
    return static_cast<double>(generated ? t.generated_tokens_total() : t.prompt_tokens_total());
  };
  family.Sample({{"scope", "rack"}}, total(stats.rack()));
  for (const v1::ScopeStats& vm : stats.vms()) {
    family.Sample({{"scope", "vm"}, {"vm", vm.name()}}, total(vm.throughput()));
  }
  for (const v1::ScopeStats& device : stats.devices()) {
    const size_t slash = device.name().rfind('/');
    const std::string vm =
        slash == std::string::npos ? device.name() : device.name().substr(0, slash);
    const std::string gpu = slash == std::string::npos ? "" : device.name().substr(slash + 1);
    family.Sample({{"scope", "gpu"}, {"vm", vm}, {"gpu", gpu}}, total(device.throughput()));
  }
  for (const v1::ScopeStats& replica : stats.replicas()) {
    family.Sample({{"scope", "replica"}, {"replica", replica.name()}}, total(replica.throughput()));
  }
}

void WriteHistogram(std::string* out, const std::string& name, const std::string& help,
                    const LatencyHistogram& histogram) {
  FamilyWriter family(out, name, "histogram", help);
  for (double bound : ExportedLatencyBounds()) {
    family.Sample("_bucket", {{"le", FormatValue(bound)}},
                  static_cast<double>(histogram.CumulativeCountAtOrBelow(bound)));
  }
  family.Sample("_bucket", {{"le", "+Inf"}}, static_cast<double>(histogram.count()));
  family.Sample("_sum", {}, histogram.sum());
  family.Sample("_count", {}, static_cast<double>(histogram.count()));
}

void WriteVmGauge(std::string* out, const std::string& name, const std::string& help,
                  const v1::RackStats& stats, double (*value)(const v1::ScopeStats&)) {
  FamilyWriter family(out, name, "gauge", help);
  for (const v1::ScopeStats& vm : stats.vms()) family.Sample({{"vm", vm.name()}}, value(vm));
}

}  // namespace

const std::vector<double>& ExportedLatencyBounds() {
  static const std::vector<double>* const bounds = [] {
    auto* out = new std::vector<double>;
    const std::vector<double>& fine = LatencyHistogram().upper_bounds();
    for (size_t i = 0; i + 1 < fine.size(); i += kExportEveryNthBound) out->push_back(fine[i]);
    return out;
  }();
  return *bounds;
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
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

std::string RenderPrometheusMetrics(const v1::RackStats& stats, const LatencyHistogram& ttft,
                                    const LatencyHistogram& tpot) {
  std::string out;
  WriteTokenFamily(&out, "rackserve_generation_tokens_total",
                   "Generated tokens; scope=rack: delivered to clients (the coordinator's count), "
                   "vm/gpu/replica: as reported by the workers.",
                   stats, /*generated=*/true);
  WriteTokenFamily(&out, "rackserve_prompt_tokens_total",
                   "Prompt tokens processed; scopes as for rackserve_generation_tokens_total.",
                   stats, /*generated=*/false);
  FamilyWriter(&out, "rackserve_requests_running", "gauge", "Requests in flight on the rack.")
      .Sample({}, static_cast<double>(stats.requests_in_flight()));
  FamilyWriter(&out, "rackserve_requests_waiting", "gauge",
               "Requests queued in the coordinator, waiting for credit.")
      .Sample({}, static_cast<double>(stats.requests_queued()));
  FamilyWriter(&out, "rackserve_requests_completed_total", "counter",
               "Requests completed since the coordinator started.")
      .Sample({}, static_cast<double>(stats.requests_completed()));
  WriteHistogram(&out, "rackserve_time_to_first_token_seconds",
                 "Time from a request's arrival to its first token.", ttft);
  WriteHistogram(&out, "rackserve_time_per_output_token_seconds",
                 "Per request: (latency - time to first token) / (generated tokens - 1).", tpot);
  FamilyWriter(&out, "rackserve_audit_exact", "gauge",
               "1 when delivered == received - discarded and received == worker-reported + "
               "unreported.")
      .Sample({}, stats.audit().exact() ? 1 : 0);
  FamilyWriter(&out, "rackserve_worker_reported_generation_tokens_total", "counter",
               "Sum of every worker's reported generated-token counter.")
      .Sample({}, static_cast<double>(stats.worker_generated_tokens_total()));
  WriteVmGauge(&out, "rackserve_worker_up", "1 when the VM's worker is alive (ready or draining).",
               stats, [](const v1::ScopeStats& vm) { return vm.state() == "dead" ? 0.0 : 1.0; });
  WriteVmGauge(&out, "rackserve_worker_sequences_running",
               "Sequences in the running batches of the VM's replicas (last heartbeat).", stats,
               [](const v1::ScopeStats& vm) { return static_cast<double>(vm.running()); });
  WriteVmGauge(&out, "rackserve_worker_sequences_waiting",
               "Sequences queued on the VM's worker (last heartbeat).", stats,
               [](const v1::ScopeStats& vm) { return static_cast<double>(vm.waiting()); });
  WriteVmGauge(&out, "rackserve_kv_cache_usage_ratio", "KV cache blocks used / total on the VM.",
               stats, [](const v1::ScopeStats& vm) {
                 return vm.kv_blocks_total() > 0 ? static_cast<double>(vm.kv_blocks_used()) /
                                                       static_cast<double>(vm.kv_blocks_total())
                                                 : 0.0;
               });
  FamilyWriter(&out, "rackserve_uptime_seconds", "gauge", "Seconds since the coordinator started.")
      .Sample({}, stats.uptime_seconds());
  return out;
}

}  // namespace rackserve::coordinator
