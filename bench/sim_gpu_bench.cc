// sim_gpu_bench: the simulated GPUs on the MLPerf-like offline workload, in virtual time — per
// profile, the modeled generated tok/s of one GPU, the batch size reached, the KV capacity, and
// the CPU cost of the engine's bookkeeping (what a worker spends per simulated GPU).
//
//   sim_gpu_bench [--profiles gb300,gb200,h200] [--num_prompts 24576] [--seed 0]
// Prints one table; figures go to bench/RESULTS.md by hand with the command and machine.
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "runtime/sim/mlperf_workload.h"
#include "runtime/sim/offline_run.h"
#include "runtime/sim/sim_engine.h"
#include "runtime/tools/command_line.h"

ABSL_FLAG(std::vector<std::string>, profiles, std::vector<std::string>({"gb300", "gb200", "h200"}),
          "GPU profiles to simulate");
ABSL_FLAG(int64_t, num_prompts, rackserve::sim::kMlperfNumPrompts, "offline workload size");
ABSL_FLAG(uint64_t, seed, 0, "workload seed");
ABSL_FLAG(double, compute_efficiency, 0,
          "overrides the profiles' fitted compute efficiency (for refitting); 0 = keep");

namespace rackserve::bench {
namespace {

constexpr char kTool[] = "sim_gpu_bench";

// User + system CPU seconds of this process.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int Main() {
  sim::WorkloadOptions workload_options;
  workload_options.num_prompts = absl::GetFlag(FLAGS_num_prompts);
  workload_options.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<std::vector<sim::WorkloadPrompt>> prompts =
      sim::GenerateMlperfWorkload(workload_options);
  if (!prompts.ok()) tools::Fail(kTool, prompts.status().ToString());
  double input = 0, output = 0;
  for (const sim::WorkloadPrompt& p : *prompts) {
    input += static_cast<double>(p.tokens.size());
    output += static_cast<double>(p.output_tokens);
  }
  const auto n = static_cast<double>(prompts->size());
  std::printf("workload: %zu prompts, mean input %.1f, mean output %.1f tokens (seed %lu)\n",
              prompts->size(), input / n, output / n,
              static_cast<unsigned long>(workload_options.seed));
  std::printf("%-7s %12s %10s %8s %12s %8s %10s %14s\n", "profile", "tok/s/GPU", "device_s",
              "batch", "kv_tokens", "preempt", "steps", "cpu_s/Mtok");
  for (const std::string& name : absl::GetFlag(FLAGS_profiles)) {
    sim::SimEngineOptions options;
    absl::StatusOr<sim::GpuProfile> profile = sim::GpuProfileByName(name);
    if (!profile.ok()) tools::Fail(kTool, profile.status().ToString());
    if (absl::GetFlag(FLAGS_compute_efficiency) > 0) {
      profile->compute_efficiency = absl::GetFlag(FLAGS_compute_efficiency);
    }
    options.custom_profile = *profile;
    options.clock = sim::ClockMode::kVirtual;
    sim::SimModelRunner* runner = nullptr;
    absl::StatusOr<std::unique_ptr<engine::Engine>> engine = sim::CreateSimEngine(options, &runner);
    if (!engine.ok()) tools::Fail(kTool, engine.status().ToString());
    const double cpu0 = CpuSeconds();
    absl::StatusOr<sim::OfflineResult> r = sim::RunOffline(engine->get(), *runner, *prompts);
    const double cpu = CpuSeconds() - cpu0;
    if (!r.ok()) tools::Fail(kTool, r.status().ToString());
    std::printf("%-7s %12.0f %10.2f %8ld %12ld %8ld %10ld %14.3f\n", name.c_str(),
                r->tokens_per_second(), r->device_seconds, static_cast<long>(r->max_batch),
                static_cast<long>((*engine)->kv_config().capacity_tokens()),
                static_cast<long>(r->preemptions), static_cast<long>(r->steps),
                cpu / static_cast<double>(r->generated_tokens) * 1e6);
  }
  return 0;
}

}  // namespace
}  // namespace rackserve::bench

int main(int argc, char** argv) {
  rackserve::tools::ParseCommandLine(argc, argv,
                                     "sim_gpu_bench [--profiles a,b] [--num_prompts N]");
  return rackserve::bench::Main();
}
