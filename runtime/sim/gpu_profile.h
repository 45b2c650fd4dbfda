// GpuProfile: the figures of one GPU model that the simulated device's time model uses — memory
// bandwidth and capacity, dense tensor rates, efficiency factors and a fixed per-step overhead.
//
// Named profiles ("gb300", "gb200", "h200") model the GPUs of the MLPerf Inference llama2-70b
// records (runtime/sim/gpu_profile.cc documents where each constant comes from). The efficiency
// factors are fitted so that one simulated GPU reproduces the record's per-GPU throughput on the
// MLPerf-like offline workload (runtime/sim/mlperf_workload.h); they are calibration constants,
// not measurements. A plain value: copyable, safe to share across threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rackserve::sim {

struct GpuProfile {
  std::string name;
  int64_t hbm_bytes = 0;              // device memory capacity
  double hbm_bytes_per_s = 0;         // peak device memory bandwidth
  double linear_flops_per_s = 0;      // dense tensor rate of the precision the linears run in
  double attention_flops_per_s = 0;   // dense tensor rate of the attention math (FP8)
  double weight_bytes_per_param = 0;  // decoder linear weights incl. block scales (NVFP4 0.5625)
  double bandwidth_efficiency = 1.0;  // achieved fraction of hbm_bytes_per_s, in (0, 1]
  double compute_efficiency = 1.0;    // achieved fraction of the tensor rates, in (0, 1]
  double step_overhead_s = 0;         // fixed time per engine step (launches, host sync), >= 0
  double memory_utilization = 1.0;    // fraction of hbm_bytes for weights + KV cache, in (0, 1]

  // INVALID_ARGUMENT naming the field and value when a figure is out of range.
  absl::Status Validate() const;
};

// The named profile; NOT_FOUND listing the known names otherwise.
absl::StatusOr<GpuProfile> GpuProfileByName(std::string_view name);
std::vector<std::string> GpuProfileNames();

}  // namespace rackserve::sim
