// The rack's metrics in the Prometheus text exposition format, version 0.0.4 (served on
// GET /metrics, Content-Type kPrometheusContentType). Pure function of its inputs; thread-safe.
//
// Families (names in the vLLM / TGI style; every family has # HELP and # TYPE lines):
//   rackserve_generation_tokens_total, rackserve_prompt_tokens_total   counter, by `scope`:
//     {scope="rack"}                        tokens the coordinator delivered (its own count;
//                                           the rack figure: select it with scope="rack")
//     {scope="vm", vm="vm0"}                as the workers of each VM reported them
//     {scope="gpu", vm="vm0", gpu="0"}      per device (RackStats.devices names "vm/device")
//     {scope="replica", replica="r0"}       per replica
//     A scope label (rather than one family per scope) keeps one name for one quantity; never sum
//     across scopes: the same tokens are counted once in each scope.
//   rackserve_requests_running, rackserve_requests_waiting     gauge (in flight / queued)
//   rackserve_requests_completed_total                         counter
//   rackserve_time_to_first_token_seconds,
//   rackserve_time_per_output_token_seconds                    histogram: _bucket{le} (cumulative,
//                                           exact: every le is a bound of LatencyHistogram),
//                                           _sum, _count
//   rackserve_audit_exact                                      gauge, 1 when the audit holds
//   rackserve_worker_reported_generation_tokens_total          counter, sum of the workers' counts
//   rackserve_worker_up{vm}                                    gauge, 1 unless the VM is "dead"
//   rackserve_worker_sequences_running{vm}, _waiting{vm}       gauge, from the last heartbeats
//   rackserve_kv_cache_usage_ratio{vm}                         gauge, KV blocks used / total
//   rackserve_uptime_seconds                                   gauge
// Label values are escaped (\\, \", \n); floats print in the shortest exact form, +Inf / NaN.
#pragma once

#include <string>
#include <vector>

#include "coordinator/latency_histogram.h"
#include "rackserve/v1/rack.pb.h"

namespace rackserve::coordinator {

inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// The `le` bounds of the exported latency histograms (seconds, ascending, +Inf excluded): every
// 16th fine bound of LatencyHistogram, three per decade from 100 us to 464 s.
const std::vector<double>& ExportedLatencyBounds();

// Renders every family above from the rack's stats and latency histograms.
std::string RenderPrometheusMetrics(const v1::RackStats& stats, const LatencyHistogram& ttft,
                                    const LatencyHistogram& tpot);

// A label value escaped for the text format: backslash, double quote and newline.
std::string EscapeLabelValue(const std::string& value);

}  // namespace rackserve::coordinator
