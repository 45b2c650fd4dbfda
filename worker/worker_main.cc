// rackserve-worker: one per VM. Serves WorkerService on --listen, registers with the
// coordinator, loads the replicas it is assigned (TP1, one emulated CPU device each) and
// heartbeats their counters. SIGTERM or SIGINT: drain (finish requests in flight), then exit 0.
// Prints "rackserve-worker: listening on HOST:PORT" once the server is up. See --help.
#include <signal.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "runtime/engine/engine.h"
#include "runtime/tools/command_line.h"
#include "worker/coordinator_client.h"
#include "worker/replica_registry.h"
#include "worker/worker_service.h"

ABSL_FLAG(std::string, coordinator, "", "the coordinator's gRPC address, host:port");
ABSL_FLAG(std::string, vm, "", "this VM's name in the rack topology");
ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "address of this worker's WorkerService; port 0 = pick one");
ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(int, devices, 1, "emulated CPU devices on this VM");
ABSL_FLAG(int, threads, 0, "CPU threads per replica; 0 = all cores");
ABSL_FLAG(int64_t, kv_cache_mb, 512, "KV cache memory per replica in MiB");
ABSL_FLAG(double, drain_timeout_s, 60, "seconds to let requests finish on SIGTERM");

namespace rackserve::worker {
namespace {

constexpr char kTool[] = "rackserve-worker";

// Creates the replicas of `assignments` this worker does not have yet.
absl::Status CreateReplicas(const std::vector<Assignment>& assignments, int num_devices,
                            const std::string& model_dir, const engine::EngineOptions& options,
                            ReplicaRegistry* registry) {
  for (const Assignment& a : assignments) {
    if (registry->Contains(a.replica_id)) continue;
    if (a.tp != 1 || a.pp != 1) {
      return absl::UnimplementedError(absl::StrCat(
          "replica '", a.replica_id, "' has tp = ", a.tp, ", pp = ", a.pp,
          ": this worker serves TP1 PP1 replicas only (multi-rank replicas come later)"));
    }
    if (a.local_devices.size() != 1 || a.local_devices[0] < 0 ||
        a.local_devices[0] >= num_devices) {
      return absl::InvalidArgumentError(absl::StrCat("replica '", a.replica_id,
                                                     "' is not placed on exactly one of this VM's ",
                                                     num_devices, " devices"));
    }
    absl::StatusOr<std::unique_ptr<ReplicaHost>> host =
        ReplicaHost::Load(a.replica_id, model_dir, options);
    if (!host.ok()) return host.status();
    if (absl::Status s = registry->Add(*std::move(host)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  tools::ParseCommandLine(argc, argv,
                          "rackserve-worker --coordinator HOST:PORT --vm NAME --model DIR "
                          "[--listen 127.0.0.1:0] [--devices N]");
  const std::string coordinator = absl::GetFlag(FLAGS_coordinator);
  const std::string vm = absl::GetFlag(FLAGS_vm);
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const int num_devices = absl::GetFlag(FLAGS_devices);
  if (coordinator.empty()) tools::Fail(kTool, "--coordinator is required");
  if (vm.empty()) tools::Fail(kTool, "--vm is required");
  if (model_dir.empty()) tools::Fail(kTool, "--model is required");
  if (num_devices < 1)
    tools::Fail(kTool, absl::StrCat("--devices must be >= 1, got ", num_devices));
  if (absl::GetFlag(FLAGS_kv_cache_mb) < 1) {
    tools::Fail(kTool,
                absl::StrCat("--kv-cache-mb must be >= 1, got ", absl::GetFlag(FLAGS_kv_cache_mb)));
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    tools::Fail(kTool, absl::StrCat("--listen '", listen, "' is not host:port"));
  }

  // Signals are taken by sigtimedwait below: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ReplicaRegistry registry;
  WorkerServiceImpl service(&registry);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    tools::Fail(kTool, absl::StrCat("cannot listen on --listen '", listen, "'"));
  }
  const std::string address = absl::StrCat(listen.substr(0, colon), ":", port);

  engine::EngineOptions engine_options;
  engine_options.num_threads = absl::GetFlag(FLAGS_threads);
  engine_options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mb) << 20;
  WorkerIdentity identity;
  identity.vm = vm;
  identity.address = address;
  identity.num_devices = num_devices;
  identity.model = model_dir;
  identity.memory_bytes = engine_options.kv_cache_bytes * num_devices;
  CoordinatorClientOptions options;
  options.on_assignments = [&](const std::vector<Assignment>& assignments) {
    return CreateReplicas(assignments, num_devices, model_dir, engine_options, &registry);
  };
  options.counters = [&] { return registry.Counters(); };
  options.on_drain = [&] { registry.DrainAll(); };
  CoordinatorClient client(coordinator, identity, options);
  client.Start();
  std::printf("%s: listening on %s\n", kTool, address.c_str());
  std::fflush(stdout);

  int exit_code = 0;
  const timespec poll = {0, 200'000'000};
  while (sigtimedwait(&signals, nullptr, &poll) < 0) {
    const absl::Status s = client.status();
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", kTool, s.ToString().c_str());
      exit_code = 1;
      break;
    }
  }
  registry.DrainAll();
  if (!registry.WaitIdle(absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)))) {
    std::fprintf(stderr, "%s: requests still in flight after --drain-timeout-s; exiting\n", kTool);
    exit_code = 1;
  }
  client.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return exit_code;
}

}  // namespace
}  // namespace rackserve::worker

int main(int argc, char** argv) { return rackserve::worker::Main(argc, argv); }
