// rackctl status [--wait-ready SECONDS]: the topology, each replica's state and each VM's health;
// with --wait-ready, first waits (polling GetTopology) until every replica and VM is ready.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/command.h"
#include "client/command_args.h"

namespace rackserve::client {
namespace {

constexpr char kCommand[] = "status";

// "" when every replica and VM is ready, else what is not ("replicas r3 (down), r7 (down); VMs
// vm03 (dead)").
std::string NotReady(const v1::Topology& topology) {
  std::vector<std::string> replicas, vms;
  for (const v1::Replica& r : topology.replicas()) {
    if (r.state() != "ready") replicas.push_back(absl::StrCat(r.id(), " (", r.state(), ")"));
  }
  for (const v1::Vm& vm : topology.vms()) {
    if (vm.state() != "ready") {
      vms.push_back(
          absl::StrCat(vm.name(), " (", vm.state().empty() ? "unregistered" : vm.state(), ")"));
    }
  }
  std::string out;
  if (!replicas.empty()) absl::StrAppend(&out, "replicas ", absl::StrJoin(replicas, ", "));
  if (!vms.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : "; ", "VMs ", absl::StrJoin(vms, ", "));
  }
  if (topology.replicas_size() == 0) absl::StrAppend(&out, out.empty() ? "" : "; ", "no replicas");
  return out;
}

void Print(const v1::Topology& topology, const v1::RackStats* stats) {
  int ready = 0;
  for (const v1::Replica& r : topology.replicas()) ready += r.state() == "ready" ? 1 : 0;
  std::printf("model: %s\n", topology.model().c_str());
  std::printf("replicas: %d ready of %d\n", ready, topology.replicas_size());
  std::printf("VMs (%d):\n", topology.vms_size());
  for (const v1::Vm& vm : topology.vms()) {
    std::string devices;
    for (const v1::Device& d : vm.devices()) {
      absl::StrAppend(&devices, devices.empty() ? "" : " ", d.index(), d.kind().empty() ? "" : ":",
                      d.kind());
    }
    std::printf("  %-8s %-12s %-22s devices [%s]\n", vm.name().c_str(),
                vm.state().empty() ? "unregistered" : vm.state().c_str(), vm.address().c_str(),
                devices.c_str());
  }
  std::printf("replicas (%d):\n", topology.replicas_size());
  for (const v1::Replica& r : topology.replicas()) {
    std::string ranks;
    for (const v1::RankPlacement& rank : r.ranks()) {
      absl::StrAppend(&ranks, ranks.empty() ? "" : " ", rank.vm(), "/", rank.device());
    }
    std::printf("  %-6s tp=%d pp=%d %-9s %s\n", r.id().c_str(), r.tp(), r.pp(), r.state().c_str(),
                ranks.c_str());
  }
  if (stats != nullptr) {
    double one_second = 0;
    for (const v1::ThroughputWindow& w : stats->rack().windows()) {
      if (w.window_seconds() <= 1.0) one_second = w.generated_tokens_per_second();
    }
    std::printf(
        "requests: %lld in flight, %lld queued, %lld completed; rack %.1f tok/s (1 s); "
        "uptime %.0f s\n",
        static_cast<long long>(stats->requests_in_flight()),
        static_cast<long long>(stats->requests_queued()),
        static_cast<long long>(stats->requests_completed()), one_second, stats->uptime_seconds());
  }
}

}  // namespace

int RunStatus(const CommandContext& context, const std::vector<std::string>& argv) {
  absl::StatusOr<CommandArgs> args = CommandArgs::Parse(argv, {"wait-ready"}, {});
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  if (!args->positional().empty()) {
    return ReportUsage(kCommand, absl::InvalidArgumentError(absl::StrCat(
                                     "unexpected argument \"", args->positional()[0], "\"")));
  }
  absl::StatusOr<double> wait = args->Double("wait-ready", 0, 0, 1e6);
  if (!wait.ok()) return ReportUsage(kCommand, wait.status());
  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());

  absl::StatusOr<v1::Topology> topology = (*rack)->Topology();
  if (args->Has("wait-ready")) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(*wait * 1000));
    while ((!topology.ok() || !NotReady(*topology).empty()) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      topology = (*rack)->Topology();
    }
    if (!topology.ok()) {
      return ReportFailure(kCommand, absl::Status(topology.status().code(),
                                                  absl::StrCat("not ready after ", *wait, " s: ",
                                                               topology.status().message())));
    }
    const std::string missing = NotReady(*topology);
    if (!missing.empty()) {
      Print(*topology, nullptr);
      return ReportFailure(kCommand, absl::UnavailableError(
                                         absl::StrCat("not ready after ", *wait, " s: ", missing)));
    }
  }
  if (!topology.ok()) return ReportFailure(kCommand, topology.status());
  v1::RackStats stats;
  grpc::ClientContext stats_context;
  stats_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const bool have_stats = (*rack)->stub().GetStats(&stats_context, v1::StatsRequest(), &stats).ok();
  Print(*topology, have_stats ? &stats : nullptr);
  return kExitOk;
}

}  // namespace rackserve::client
