// rackserve-coordinator: the rack's front door. Reads the topology, serves the client API (Rack)
// and the workers' API (CoordinatorService) on one gRPC port, and prints "listening on HOST:PORT"
// once it accepts calls. The model's vocabulary and context come from <model>/config.json when
// the topology's model directory has one (else --vocab-size / --max-context); text prompts need
// <model>/tokenizer.model. Beside gRPC it serves HTTP (--http-listen: /metrics for Prometheus,
// /api/stats, /healthz, /readyz and the dashboard at /) and prints "http on HOST:PORT" right after
// the "listening on" line. See --help.
#include <pthread.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "coordinator/clock.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/dispatcher.h"
#include "coordinator/http_endpoint.h"
#include "coordinator/latency_histogram.h"
#include "coordinator/rack_context.h"
#include "coordinator/rack_service.h"
#include "coordinator/registry.h"
#include "coordinator/rendezvous_service.h"
#include "coordinator/router.h"
#include "coordinator/throughput.h"
#include "coordinator/topology.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "runtime/model/model_config.h"
#include "runtime/tools/command_line.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "gRPC address HOST:PORT; port 0 picks a free one");
ABSL_FLAG(std::string, topology, "", "topology YAML file (required)");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:0",
          "HTTP address HOST:PORT (/metrics, /api/stats, /healthz, /readyz, dashboard at /); "
          "port 0 picks a free one");
ABSL_FLAG(std::string, layout, "",
          "a named layout from the topology's `layouts` (default: its `layout`)");
ABSL_FLAG(std::string, model, "", "model directory, instead of the topology's `model`");
ABSL_FLAG(bool, check, false,
          "validate the topology, print \"model DIR\", one line per VM (\"vm NAME DEVICES\") "
          "and per replica (\"replica ID tp=T pp=P VM/DEVICE ...\"), and exit");
ABSL_FLAG(double, heartbeat_timeout_s, 3.0,
          "a worker silent this long (no heartbeat, or no keepalive answer on its data link) is "
          "declared dead");
ABSL_FLAG(int64_t, queue_limit, 1024,
          "requests that may wait for credit; more are refused (0: refuse when no replica has "
          "credit now)");
ABSL_FLAG(int64_t, vocab_size, 32000, "vocabulary size when the model has no config.json");
ABSL_FLAG(int64_t, max_context, 4096, "context length when the model has no config.json");

namespace {
constexpr char kTool[] = "rackserve-coordinator";
}  // namespace

int main(int argc, char** argv) {
  using namespace rackserve::coordinator;  // NOLINT: a tool's main
  namespace tools = rackserve::tools;
  // SIGTERM / SIGINT are taken by one thread (sigwait) that shuts the server down: blocked here,
  // before any thread starts, so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  tools::ParseCommandLine(argc, argv,
                          "rackserve-coordinator --topology rack.yaml [--listen 127.0.0.1:0] "
                          "[--layout NAME] [--model DIR] [--check]");
  if (absl::GetFlag(FLAGS_topology).empty()) tools::Fail(kTool, "--topology is required");
  if (absl::GetFlag(FLAGS_heartbeat_timeout_s) <= 0) {
    tools::Fail(kTool, "--heartbeat-timeout-s must be > 0");
  }
  if (absl::GetFlag(FLAGS_queue_limit) < 0) tools::Fail(kTool, "--queue-limit must be >= 0");

  absl::StatusOr<Topology> topology = Topology::LoadFile(
      absl::GetFlag(FLAGS_topology),
      {.layout = absl::GetFlag(FLAGS_layout), .model = absl::GetFlag(FLAGS_model)});
  if (!topology.ok()) tools::Fail(kTool, std::string(topology.status().message()));
  if (absl::GetFlag(FLAGS_check)) {
    std::printf("model %s\n", topology->model().c_str());
    for (const VmSpec& vm : topology->vms()) {
      std::printf("vm %s %d\n", vm.name.c_str(), vm.devices);
    }
    for (const ReplicaSpec& replica : topology->replicas()) {
      std::string ranks;
      for (const RankSpec& rank : replica.ranks) {
        absl::StrAppend(&ranks, " ", rank.vm, "/", rank.device);
      }
      std::printf("replica %s tp=%d pp=%d%s\n", replica.id.c_str(), replica.tp, replica.pp,
                  ranks.c_str());
    }
    return 0;
  }

  RackServiceOptions options;
  options.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  options.max_context = absl::GetFlag(FLAGS_max_context);
  options.data_path.link_silence_timeout = absl::Seconds(absl::GetFlag(FLAGS_heartbeat_timeout_s));
  const std::filesystem::path model_dir = topology->model();
  if (std::filesystem::exists(model_dir / "config.json")) {
    auto config = rackserve::model::ModelConfig::FromFile(model_dir / "config.json");
    if (!config.ok()) tools::Fail(kTool, std::string(config.status().message()));
    options.vocab_size = config->vocab_size;
    options.max_context = config->max_position_embeddings;
  }
  if (std::filesystem::exists(model_dir / "tokenizer.model")) {
    options.tokenizer_path = model_dir / "tokenizer.model";  // text prompts (prompt_text)
  }

  Clock& clock = RealClock();
  Registry registry(&*topology, &clock, absl::Seconds(absl::GetFlag(FLAGS_heartbeat_timeout_s)));
  Dispatcher dispatcher(&registry, std::make_unique<LeastOutstandingPolicy>(),
                        absl::GetFlag(FLAGS_queue_limit));
  RackThroughput throughput(PlacementsOf(*topology));
  RequestLatency latency;  // TTFT / TPOT of finished requests, served on /metrics
  const RackContext rack{&*topology, &registry, &dispatcher, &throughput, &clock, &latency};
  auto rack_service = RackServiceImpl::Create(options, rack);
  if (!rack_service.ok()) tools::Fail(kTool, std::string(rack_service.status().message()));
  CoordinatorServiceImpl coordinator_service(
      rack, [&](const std::string& worker_id) { (*rack_service)->OnWorkerDead(worker_id); });

  const std::string listen = absl::GetFlag(FLAGS_listen);
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) tools::Fail(kTool, "--listen must be HOST:PORT, got " + listen);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(rack_service->get());
  RendezvousServiceImpl rendezvous_service(&*topology);
  builder.RegisterService(&coordinator_service);
  builder.RegisterService(&rendezvous_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) tools::Fail(kTool, "cannot listen on " + listen);
  std::printf("listening on %s:%d\n", listen.substr(0, colon).c_str(), port);
  HttpEndpoint::Sources http_sources;
  http_sources.stats = [&rack_service] {
    rackserve::v1::RackStats stats;
    (*rack_service)->FillStats(&stats);
    return stats;
  };
  http_sources.topology = [&rack_service] {
    rackserve::v1::Topology out;
    (*rack_service)->FillTopology(&out);
    return out;
  };
  http_sources.ready = [&registry] {
    for (const ReplicaStatus& replica : registry.Replicas()) {
      if (!replica.live) return false;
    }
    return true;
  };
  http_sources.latency = &latency;
  absl::StatusOr<std::unique_ptr<HttpEndpoint>> http =
      HttpEndpoint::Start(absl::GetFlag(FLAGS_http_listen), std::move(http_sources));
  if (!http.ok()) tools::Fail(kTool, std::string(http.status().message()));
  std::printf("http on %s:%d\n", (*http)->host().c_str(), (*http)->port());
  std::fflush(stdout);

  std::thread([&server, &rack_service, &stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    (*rack_service)->Shutdown();  // ends WatchStats streams and the monitor
    // Workers hold their heartbeat streams open for their whole life: calls still running after
    // a short grace are cancelled, so the coordinator always exits.
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }).detach();
  server->Wait();
  (*rack_service)->Shutdown();
  return 0;
}
