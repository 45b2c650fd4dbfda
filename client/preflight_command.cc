// rackctl preflight [--timeout S]: the check before traffic. Every VM's worker is registered,
// every replica is ready (its communicators formed), and one canary request runs through every
// replica — pinned to it with GenerateRequest.replica_id, so each replica is exercised exactly
// once and the coordinator counts the canaries like any request (the audit stays exact). A failure
// names the replica, its VM and GPU (the leader rank's placement). Exit 0 when every canary
// completed, 1 otherwise.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/command_args.h"

namespace rackserve::client {
namespace {

constexpr char kCommand[] = "preflight";
constexpr int kCanaryTokens = 2;

std::chrono::system_clock::time_point DeadlineIn(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The VMs and replicas of `topology` that are not ready, as "VM vm3 dead", "replica r5 down".
std::vector<std::string> NotReady(const v1::Topology& topology) {
  std::vector<std::string> out;
  for (const v1::Vm& vm : topology.vms()) {
    if (vm.state() != "ready") out.push_back(absl::StrCat("VM ", vm.name(), " ", vm.state()));
  }
  for (const v1::Replica& replica : topology.replicas()) {
    if (replica.state() != "ready") {
      out.push_back(absl::StrCat("replica ", replica.id(), " ", replica.state()));
    }
  }
  return out;
}

// One canary through `replica_id`; the error says what failed.
absl::Status Canary(RackConnection& rack, const std::string& replica_id, double timeout_s) {
  v1::GenerateRequest request;
  request.set_request_id(absl::StrCat("preflight-", replica_id));
  request.set_replica_id(replica_id);
  request.add_prompt_token_ids(1);
  request.mutable_sampling()->set_max_new_tokens(kCanaryTokens);
  request.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext call;
  call.set_deadline(DeadlineIn(timeout_s));
  auto reader = rack.stub().Generate(&call, request);
  v1::TokenChunk chunk;
  int64_t tokens = 0;
  bool finished = false;
  while (reader->Read(&chunk)) {
    tokens += chunk.token_ids_size();
    finished = finished || chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return rack.Convert(status, "Generate");
  if (!finished || tokens != kCanaryTokens) {
    return absl::DataLossError(absl::StrCat("the canary ended after ", tokens, " of ",
                                            kCanaryTokens, " tokens without a finish reason"));
  }
  return absl::OkStatus();
}

}  // namespace

int RunPreflight(const CommandContext& context, const std::vector<std::string>& argv) {
  absl::StatusOr<CommandArgs> args = CommandArgs::Parse(argv, {"timeout"}, {});
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  absl::StatusOr<double> timeout = args->Double("timeout", 60, 0.1, 3600);
  if (!timeout.ok()) return ReportUsage(kCommand, timeout.status());
  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());

  const auto give_up = DeadlineIn(*timeout);
  v1::Topology topology;
  std::vector<std::string> not_ready;
  while (true) {
    absl::StatusOr<v1::Topology> now = (*rack)->Topology();
    if (!now.ok()) return ReportFailure(kCommand, now.status());
    topology = *std::move(now);
    not_ready = NotReady(topology);
    if (not_ready.empty() || std::chrono::system_clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!not_ready.empty()) {
    std::string list;
    for (const std::string& s : not_ready) absl::StrAppend(&list, list.empty() ? "" : ", ", s);
    return ReportFailure(
        kCommand, absl::UnavailableError(absl::StrCat("not ready after ", *timeout, " s: ", list)));
  }

  int failed = 0;
  for (const v1::Replica& replica : topology.replicas()) {
    const absl::Status status = Canary(**rack, replica.id(), *timeout);
    if (status.ok()) continue;
    ++failed;
    const std::string vm = replica.ranks_size() > 0 ? replica.ranks(0).vm() : "?";
    const int gpu = replica.ranks_size() > 0 ? replica.ranks(0).device() : -1;
    std::fprintf(stderr, "rackctl %s: replica %s (VM %s, GPU %d): %s\n", kCommand,
                 replica.id().c_str(), vm.c_str(), gpu, std::string(status.message()).c_str());
  }
  if (failed > 0) {
    return ReportFailure(
        kCommand, absl::UnavailableError(absl::StrCat(failed, " of ", topology.replicas_size(),
                                                      " replicas failed their canary request")));
  }
  std::printf("preflight: %d VMs registered, %d replicas ready, %d canaries completed\n",
              topology.vms_size(), topology.replicas_size(), topology.replicas_size());
  return kExitOk;
}

}  // namespace rackserve::client
