// sim_gpu_bench: the simulated GPUs on the MLPerf-like offline workload (in virtual time unless
// --clock realtime) — per profile, the modeled generated tok/s of one GPU, the batch size reached,
// the KV capacity, and the CPU cost per generated token of what a worker spends per simulated GPU.
//
//   sim_gpu_bench [--profiles gb300,gb200,h200] [--num_prompts 24576] [--seed 0] [--path engine]
//                 [--clock virtual|realtime] [--speedup 1] [--deliver_at_end]
// --path engine: the engine alone (scheduler, KV accounting, batching, stop conditions).
// --path host: the rack's worker path — every prompt submitted as a v1::ReplicaRequest to a
//   ServeSession over one ReplicaHost (its step thread drives the engine and delivers to the
//   session's outbox), with a writer thread taking the outbox as the Serve stream would (without
//   serializing it). cpu_s/Mtok counts every thread of the process. `checksum` fingerprints the
//   delivered (handle, token) pairs: it must not change when the path is optimized.
// Prints one table; figures go to bench/RESULTS.md by hand with the command and machine.
#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "rackserve/v1/worker.pb.h"
#include "runtime/sampling/counter_rng.h"
#include "runtime/sim/mlperf_workload.h"
#include "runtime/sim/offline_run.h"
#include "runtime/sim/sim_engine.h"
#include "runtime/tools/command_line.h"
#include "worker/replica_host.h"
#include "worker/replica_registry.h"
#include "worker/serve_session.h"

ABSL_FLAG(std::vector<std::string>, profiles, std::vector<std::string>({"gb300", "gb200", "h200"}),
          "GPU profiles to simulate");
ABSL_FLAG(int64_t, num_prompts, rackserve::sim::kMlperfNumPrompts, "offline workload size");
ABSL_FLAG(uint64_t, seed, 0, "workload seed");
ABSL_FLAG(double, compute_efficiency, 0,
          "overrides the profiles' fitted compute efficiency (for refitting); 0 = keep");
ABSL_FLAG(std::string, path, "engine",
          "engine: the engine alone; host: ReplicaHost + ServeSession delivery (the worker path)");
ABSL_FLAG(std::string, clock, "virtual",
          "virtual: steps take no wall time; realtime: each step sleeps its modeled time, as in a "
          "worker (cpu_s/Mtok then includes what the sleeps cost the caches)");
ABSL_FLAG(double, speedup, 1.0, "every modeled step takes 1 / speedup of its time");
ABSL_FLAG(bool, deliver_at_end, false,
          "host path: requests hold their tokens after the first until they end, as SubmitBatch's "
          "requests do (default: every token delivered at its step, as Generate's)");

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

// What one run on the host path delivered.
struct HostRunResult {
  int64_t generated_tokens = 0;
  int64_t ends = 0;
  uint64_t checksum = 0;  // sum of CounterHash(handle, token) over delivered tokens
  double device_seconds = 0;
  int64_t steps = 0;
};

// Submits every prompt through a ServeSession to one ReplicaHost over `engine` and takes the
// outbox on a writer thread until every submission ended.
HostRunResult RunHostPath(std::unique_ptr<engine::Engine> engine, const sim::SimModelRunner& runner,
                          const std::vector<sim::WorkloadPrompt>& prompts) {
  const std::string replica_id = "sim-0";
  worker::ReplicaRegistry registry;
  const absl::Status added =
      registry.Add(std::make_unique<worker::ReplicaHost>(replica_id, std::move(engine)));
  if (!added.ok()) tools::Fail(kTool, added.ToString());
  const std::shared_ptr<worker::ServeSession> session = worker::ServeSession::Create(&registry);
  HostRunResult result;
  std::thread writer([&] {
    v1::ServeOutbound out;
    while (true) {
      const worker::ServeSession::TakeResult taken = session->Take(absl::Seconds(1), &out);
      if (taken == worker::ServeSession::TakeResult::kDone) break;
      if (taken != worker::ServeSession::TakeResult::kTaken) continue;
      result.generated_tokens += out.token_ids_size();
      result.ends += out.ends_size();
      int pos = 0;
      for (int i = 0; i < out.handles_size(); ++i) {
        for (uint32_t k = 0; k < out.counts(i); ++k, ++pos) {
          result.checksum += sampling::CounterHash(
              out.handles(i), static_cast<uint64_t>(static_cast<uint32_t>(out.token_ids(pos))));
        }
      }
      for (const v1::SubmissionEnd& end : out.ends()) {
        if (end.error_code() != 0) {
          tools::Fail(kTool,
                      absl::StrCat("submission ", end.handle(), " failed: ", end.error_message()));
        }
      }
    }
  });
  v1::ReplicaRequest request;
  request.set_replica_id(replica_id);
  request.mutable_sampling()->set_ignore_eos(true);
  request.set_deliver_at_end(absl::GetFlag(FLAGS_deliver_at_end));
  for (size_t i = 0; i < prompts.size(); ++i) {
    request.set_handle(i + 1);
    request.set_request_id(absl::StrCat("r", i));
    request.mutable_prompt_token_ids()->Assign(prompts[i].tokens.begin(), prompts[i].tokens.end());
    request.mutable_sampling()->set_max_new_tokens(prompts[i].output_tokens);
    session->Submit(request);
  }
  session->CloseInput();
  writer.join();
  const absl::StatusOr<worker::ReplicaHost*> host = registry.Find(replica_id);
  if (!host.ok()) tools::Fail(kTool, host.status().ToString());
  result.steps = (*host)->counters().steps;
  result.device_seconds = runner.device_seconds();
  return result;
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
  const std::string path = absl::GetFlag(FLAGS_path);
  if (path != "engine" && path != "host") {
    tools::Fail(kTool, absl::StrCat("--path must be engine or host, got '", path, "'"));
  }
  const std::string clock_name = absl::GetFlag(FLAGS_clock);
  if (clock_name != "virtual" && clock_name != "realtime") {
    tools::Fail(kTool, absl::StrCat("--clock must be virtual or realtime, got '", clock_name, "'"));
  }
  const sim::ClockMode clock =
      clock_name == "realtime" ? sim::ClockMode::kRealTime : sim::ClockMode::kVirtual;
  if (path == "host") {
    std::printf("path host: ReplicaHost + ServeSession delivery, all threads counted\n");
    std::printf("%-7s %12s %10s %10s %14s %18s\n", "profile", "tok/s/GPU", "device_s", "steps",
                "cpu_s/Mtok", "checksum");
  } else {
    std::printf("%-7s %12s %10s %8s %12s %8s %10s %14s\n", "profile", "tok/s/GPU", "device_s",
                "batch", "kv_tokens", "preempt", "steps", "cpu_s/Mtok");
  }
  for (const std::string& name : absl::GetFlag(FLAGS_profiles)) {
    sim::SimEngineOptions options;
    absl::StatusOr<sim::GpuProfile> profile = sim::GpuProfileByName(name);
    if (!profile.ok()) tools::Fail(kTool, profile.status().ToString());
    if (absl::GetFlag(FLAGS_compute_efficiency) > 0) {
      profile->compute_efficiency = absl::GetFlag(FLAGS_compute_efficiency);
    }
    options.custom_profile = *profile;
    options.clock = clock;
    options.speedup = absl::GetFlag(FLAGS_speedup);
    sim::SimModelRunner* runner = nullptr;
    absl::StatusOr<std::unique_ptr<engine::Engine>> engine = sim::CreateSimEngine(options, &runner);
    if (!engine.ok()) tools::Fail(kTool, engine.status().ToString());
    if (path == "host") {
      const double cpu0 = CpuSeconds();
      const HostRunResult r = RunHostPath(*std::move(engine), *runner, *prompts);
      const double cpu = CpuSeconds() - cpu0;
      std::printf("%-7s %12.0f %10.2f %10ld %14.3f %18lx\n", name.c_str(),
                  static_cast<double>(r.generated_tokens) / r.device_seconds, r.device_seconds,
                  static_cast<long>(r.steps), cpu / static_cast<double>(r.generated_tokens) * 1e6,
                  static_cast<unsigned long>(r.checksum));
      continue;
    }
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
  rackserve::tools::ParseCommandLine(
      argc, argv,
      "sim_gpu_bench [--profiles a,b] [--num_prompts N] [--path engine|host] "
      "[--clock virtual|realtime] [--speedup F] [--deliver_at_end]");
  return rackserve::bench::Main();
}
