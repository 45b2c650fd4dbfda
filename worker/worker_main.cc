// rackserve-worker: one per VM. Serves WorkerService on --listen, registers with the
// coordinator, creates the replicas it is assigned and heartbeats their counters.
// TP1 PP1 replicas load on the registration thread. A multi-rank (TP x PP) replica forms on a
// thread of its own: this VM's ranks connect through the coordinator's RendezvousService (round 0:
// a replica forms once per worker lifetime; the ranks of a re-registration keep the replicas they
// have), load their shards, and rank 0's worker hosts the leader (a ReplicaHost over an Engine
// with a DistributedModelRunner) while every other local rank follows on its own thread. A
// replica may span workers. A broken multi-rank replica (a rank died) advertises no credit and
// stays broken (rebuilding it is not done yet); the worker stays up.
// SIGTERM or SIGINT: drain (finish requests in flight), then exit 0 (a replica still forming is
// waited for, at most --comm-connect-timeout-s). A draining worker (SIGTERM or the coordinator's
// drain) accepts no new assignments, also when it registers again.
// Prints "rackserve-worker: listening on HOST:PORT" once the server is up. See --help.
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "runtime/base/status_macros.h"
#include "runtime/engine/engine.h"
#include "runtime/sim/sim_engine.h"
#include "runtime/tools/command_line.h"
#include "worker/coordinator_client.h"
#include "worker/coordinator_rendezvous.h"
#include "worker/rank_group.h"
#include "worker/replica_registry.h"
#include "worker/worker_service.h"

ABSL_FLAG(std::string, coordinator, "", "the coordinator's gRPC address, host:port");
ABSL_FLAG(std::string, vm, "", "this VM's name in the rack topology");
ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "address of this worker's WorkerService; port 0 = pick one");
ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(int, devices, 1, "emulated CPU devices on this VM");
ABSL_FLAG(int, threads, 0, "CPU threads per replica (per rank of a multi-rank one); 0 = all cores");
ABSL_FLAG(int64_t, kv_cache_mb, 512, "KV cache memory per replica in MiB");
ABSL_FLAG(std::string, backend, "cpu",
          "cpu: run the model on the CPU; sim: simulated GPUs (runtime/sim), no computation");
ABSL_FLAG(std::string, gpu_profile, "gb300", "--backend sim: the GPU profile (gb300, gb200, h200)");
ABSL_FLAG(double, sim_speedup, 1.0, "--backend sim: run the profile this many times faster");
ABSL_FLAG(double, serve_flush_ms, 5,
          "least milliseconds between two writes of a Serve stream (tokens produced meanwhile go "
          "in the next one); 0 = write at once");
ABSL_FLAG(double, drain_timeout_s, 60, "seconds to let requests finish on SIGTERM");
ABSL_FLAG(double, comm_timeout_s, 30,
          "multi-rank replicas: seconds a leader's step waits on another rank before the replica "
          "fails (idle followers wait without limit)");
ABSL_FLAG(double, comm_connect_timeout_s, 120,
          "multi-rank replicas: seconds to wait for every rank at the rendezvous and handshake");

namespace rackserve::worker {
namespace {

constexpr char kTool[] = "rackserve-worker";

// The RankGroups of this worker's multi-rank replicas. Declared before the ReplicaRegistry so
// that it outlives the leaders' ReplicaHosts (their engines use the groups' communicators).
// Thread-safe.
class RankGroups {
 public:
  void Add(std::unique_ptr<RankGroup> group) {
    absl::MutexLock lock(&mu_);
    const std::string id = group->replica_id();
    groups_[id] = std::move(group);
  }
  // The heartbeat's counters: a broken replica advertises no credit.
  std::vector<ReplicaCounters> Counters(const ReplicaRegistry& registry) const {
    std::vector<ReplicaCounters> counters = registry.Counters();
    absl::MutexLock lock(&mu_);
    for (ReplicaCounters& c : counters) {
      auto it = groups_.find(c.replica_id);
      if (it != groups_.end() && !it->second->status().ok()) c.free_token_credit = 0;
    }
    return counters;
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<RankGroup>> groups_ ABSL_GUARDED_BY(mu_);
};

struct ReplicaSettings {
  std::string vm;
  int num_devices = 1;
  std::string model_dir;
  engine::EngineOptions engine;
  bool simulated = false;  // --backend sim: `sim` configures the replicas' engines
  sim::SimEngineOptions sim;
  absl::Duration comm_timeout;
  absl::Duration connect_timeout;
};

// Creates this worker's replicas from its assignments, and refuses new ones once draining.
// Thread-safe; the destructor waits for formations in progress.
class ReplicaFactory {
 public:
  ReplicaFactory(ReplicaSettings settings, std::shared_ptr<grpc::Channel> coordinator,
                 std::function<std::string()> worker_id, ReplicaRegistry* registry,
                 RankGroups* groups)
      : settings_(std::move(settings)),
        coordinator_(std::move(coordinator)),
        worker_id_(std::move(worker_id)),
        registry_(registry),
        groups_(groups) {}
  ~ReplicaFactory() { JoinFormations(); }

  // Creates the replicas of `assignments` this worker does not have (or is forming) yet; none
  // while draining. An error for a TP1 replica is final for the worker (as before); a multi-rank
  // replica that fails to form is reported on stderr and left out.
  absl::Status Create(const std::vector<Assignment>& assignments) {
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::OkStatus();
    for (const Assignment& a : assignments) {
      if (registry_->Contains(a.replica_id) || known_.contains(a.replica_id)) continue;
      for (int device : a.local_devices) {
        if (device < 0 || device >= settings_.num_devices) {
          return absl::InvalidArgumentError(
              absl::StrCat("replica '", a.replica_id, "' is placed on device ", device,
                           ", outside this VM's ", settings_.num_devices, " devices"));
        }
      }
      if (a.tp * a.pp > 1 && settings_.simulated) {
        return absl::UnimplementedError(
            absl::StrCat("replica '", a.replica_id, "' has tp ", a.tp, " x pp ", a.pp,
                         ": the sim backend simulates TP1 PP1 replicas only"));
      }
      if (a.tp * a.pp > 1) {
        known_.insert(a.replica_id);
        formations_.emplace_back([this, a] { Form(a); });
        continue;
      }
      if (a.local_devices.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "replica '", a.replica_id, "' (tp 1, pp 1) is not placed on exactly one device"));
      }
      absl::StatusOr<std::unique_ptr<ReplicaHost>> host = LoadReplica(a.replica_id);
      if (!host.ok()) return host.status();
      if (absl::Status s = registry_->Add(*std::move(host)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Stops accepting assignments and drains every replica (also ones still forming, once formed).
  void DrainAll() {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    registry_->DrainAll();
  }

  void JoinFormations() {
    std::vector<std::thread> formations;
    {
      absl::MutexLock lock(&mu_);
      formations.swap(formations_);
    }
    for (std::thread& t : formations) t.join();
  }

 private:
  // A TP1 PP1 replica: the model on the CPU, or a simulated GPU.
  absl::StatusOr<std::unique_ptr<ReplicaHost>> LoadReplica(const std::string& replica_id) {
    if (!settings_.simulated) {
      return ReplicaHost::Load(replica_id, settings_.model_dir, settings_.engine);
    }
    RS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                        sim::CreateSimEngine(settings_.sim));
    return std::make_unique<ReplicaHost>(replica_id, std::move(engine));
  }

  // The replica's ranks on this VM. An Assignment lists this VM's devices but not their ranks:
  // all ranks when every one is here, else from the coordinator's topology.
  absl::StatusOr<std::vector<int>> LocalRanks(const Assignment& a) {
    std::vector<int> ranks;
    if (static_cast<int>(a.local_devices.size()) == a.tp * a.pp) {
      for (int r = 0; r < a.tp * a.pp; ++r) ranks.push_back(r);
      return ranks;
    }
    auto rack = v1::Rack::NewStub(coordinator_);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::Topology topology;
    const grpc::Status status = rack->GetTopology(&context, v1::TopologyRequest(), &topology);
    if (!status.ok()) {
      return absl::UnavailableError(
          absl::StrCat("replica '", a.replica_id,
                       "': cannot read the coordinator's topology: ", status.error_message()));
    }
    for (const v1::Replica& replica : topology.replicas()) {
      if (replica.id() != a.replica_id) continue;
      for (int r = 0; r < replica.ranks_size(); ++r) {
        if (replica.ranks(r).vm() == settings_.vm) ranks.push_back(r);
      }
    }
    if (ranks.size() != a.local_devices.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "replica '", a.replica_id, "': the coordinator's topology places ", ranks.size(),
          " ranks on VM '", settings_.vm, "', the assignment ", a.local_devices.size()));
    }
    return ranks;
  }

  // A formation thread: forms the replica's local ranks and hosts its leader when here.
  void Form(const Assignment& a) {
    absl::Status status = FormReplica(a);
    if (!status.ok()) {
      std::fprintf(stderr, "%s: replica '%s' not formed: %s\n", kTool, a.replica_id.c_str(),
                   status.ToString().c_str());
    }
  }

  absl::Status FormReplica(const Assignment& a) {
    RankGroupOptions options;
    options.replica_id = a.replica_id;
    options.tp = a.tp;
    options.pp = a.pp;
    RS_ASSIGN_OR_RETURN(options.local_ranks, LocalRanks(a));
    options.model_dir = settings_.model_dir;
    options.engine = settings_.engine;
    options.comm_timeout = settings_.comm_timeout;
    options.connect_timeout = settings_.connect_timeout;
    const std::string worker_id = worker_id_();
    auto group = std::make_unique<RankGroup>(
        std::move(options), [this, worker_id](const std::string& group_id) {
          return std::make_unique<CoordinatorRendezvous>(coordinator_, worker_id, group_id,
                                                         /*round=*/0);
        });
    RS_RETURN_IF_ERROR(group->Form());
    std::unique_ptr<engine::Engine> leader = group->TakeLeaderEngine();
    RankGroup* formed = group.get();
    groups_->Add(std::move(group));
    if (leader == nullptr) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    RS_RETURN_IF_ERROR(
        registry_->Add(std::make_unique<ReplicaHost>(formed->replica_id(), std::move(leader))));
    if (draining_) registry_->DrainAll();
    return absl::OkStatus();
  }

  const ReplicaSettings settings_;
  const std::shared_ptr<grpc::Channel> coordinator_;
  const std::function<std::string()> worker_id_;
  ReplicaRegistry* const registry_;
  RankGroups* const groups_;

  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<std::string> known_ ABSL_GUARDED_BY(mu_);  // multi-rank, formed or forming
  std::vector<std::thread> formations_ ABSL_GUARDED_BY(mu_);
};

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
  for (const auto& [flag, value] :
       {std::pair<const char*, double>{"--comm-timeout-s", absl::GetFlag(FLAGS_comm_timeout_s)},
        {"--comm-connect-timeout-s", absl::GetFlag(FLAGS_comm_connect_timeout_s)}}) {
    if (!(value > 0)) tools::Fail(kTool, absl::StrCat(flag, " must be > 0, got ", value));
  }
  const double serve_flush_ms = absl::GetFlag(FLAGS_serve_flush_ms);
  if (!(serve_flush_ms >= 0) || std::isinf(serve_flush_ms)) {
    tools::Fail(kTool,
                absl::StrCat("--serve-flush-ms must be finite and >= 0, got ", serve_flush_ms));
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

  RankGroups rank_groups;  // outlives the registry: leaders' engines use its communicators
  ReplicaRegistry registry;
  WorkerServiceImpl service(&registry, absl::Milliseconds(serve_flush_ms));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  // Accept the coordinator's keepalive pings (every second, also while no token flows): gRPC's
  // default policy answers them with GOAWAY "too_many_pings", which breaks quiet streams.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Nor hold pings that arrive closer than that against it: a loaded coordinator's pings come
  // bunched, and two strikes (the default) would end an idle stream with GOAWAY. (The links that
  // broke on a 72-GPU rack on 2 vCPUs were the coordinator's own keepalive timeout, since tied to
  // its heartbeat timeout; this setting only rules out the other way.)
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
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
  ReplicaSettings settings;
  settings.vm = vm;
  settings.num_devices = num_devices;
  settings.model_dir = model_dir;
  settings.engine = engine_options;
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend != "cpu" && backend != "sim") {
    tools::Fail(kTool, absl::StrCat("--backend must be cpu or sim, got '", backend, "'"));
  }
  settings.simulated = backend == "sim";
  if (settings.simulated) {
    // --model is a model directory (its config.json) or a preset name such as llama2-70b.
    settings.sim.model = std::filesystem::exists(std::filesystem::path(model_dir) / "config.json")
                             ? (std::filesystem::path(model_dir) / "config.json").string()
                             : model_dir;
    settings.sim.gpu_profile = absl::GetFlag(FLAGS_gpu_profile);
    settings.sim.speedup = absl::GetFlag(FLAGS_sim_speedup);
    // Fail at start, naming the flag, rather than at the first assignment.
    if (absl::StatusOr<std::unique_ptr<engine::Engine>> probe = sim::CreateSimEngine(settings.sim);
        !probe.ok()) {
      tools::Fail(kTool, absl::StrCat("--backend sim: ", probe.status().ToString()));
    }
  }
  settings.comm_timeout = absl::Seconds(absl::GetFlag(FLAGS_comm_timeout_s));
  settings.connect_timeout = absl::Seconds(absl::GetFlag(FLAGS_comm_connect_timeout_s));
  std::atomic<CoordinatorClient*> session = nullptr;  // set once the client exists
  ReplicaFactory factory(
      settings, grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials()),
      [&session] {
        CoordinatorClient* client = session.load();
        return client != nullptr && client->WaitRegistered(absl::Seconds(10)) ? client->worker_id()
                                                                              : std::string();
      },
      &registry, &rank_groups);
  CoordinatorClientOptions options;
  options.on_assignments = [&](const std::vector<Assignment>& assignments) {
    return factory.Create(assignments);
  };
  options.counters = [&] { return rank_groups.Counters(registry); };
  options.on_drain = [&] { factory.DrainAll(); };
  CoordinatorClient client(coordinator, identity, options);
  session = &client;
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
  factory.DrainAll();
  if (!registry.WaitIdle(absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)))) {
    std::fprintf(stderr, "%s: requests still in flight after --drain-timeout-s; exiting\n", kTool);
    exit_code = 1;
  }
  client.Stop();
  factory.JoinFormations();  // before the client goes: formations may ask for its worker id
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return exit_code;
}

}  // namespace
}  // namespace rackserve::worker

int main(int argc, char** argv) { return rackserve::worker::Main(argc, argv); }
