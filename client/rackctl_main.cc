// rackctl: the rack's client and operator CLI (status, generate, batch, bench, top, drain,
// preflight).
// `rackctl [--coordinator HOST:PORT] <command> [flags]`; `rackctl help` lists the commands.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/command.h"
#include "client/coordinator_address.h"

namespace {

constexpr char kUsage[] = R"(usage: rackctl [--coordinator HOST:PORT] <command> [flags]

The coordinator address: --coordinator, else $RACKSERVE_COORDINATOR, else the file
$RACKSERVE_RACK_DIR/coordinator.addr (default rack dir: <build>/rack, written by `deploy/rack up`).

commands:
  status [--wait-ready SECONDS]          topology, replicas and their state, VM health
  generate (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N] [--temperature T] [--top-p P]
           [--top-k K] [--seed S] [--ignore-eos]
                                         stream one request's tokens to the terminal
  batch --in requests.jsonl --out results.jsonl [--concurrency N]
                                         run a JSONL file of requests, write one result per line
  bench --scenario offline|server|interactive [--count N] [--qps R] [--seed S]
        [--out-dir DIR] [--max-output N]  LoadGen-style run on a synthetic MLPerf-like dataset
  top [--interval S] [--once]            live view of the rack
  drain VM [--resume]                    stop (or resume) routing new requests to a VM
  preflight [--timeout SECONDS]          every worker registered, every replica ready, one
                                         canary request through every replica

exit status: 0 success, 1 a failed operation, 2 bad usage
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace rackserve::client;  // NOLINT: a tool's main
  // The distribution's abseil checks every Mutex acquisition for deadlock cycles; costly on the
  // bench's hot path and only ever a report.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string coordinator;
  std::string command;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--coordinator" && i + 1 < argc) {
      coordinator = argv[++i];
    } else if (arg.rfind("--coordinator=", 0) == 0) {
      coordinator = arg.substr(14);
    } else if (command.empty() && (arg == "-h" || arg == "--help" || arg == "help")) {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (command.empty() && arg.rfind("-", 0) != 0) {
      command = arg;
    } else if (command.empty()) {
      std::fprintf(stderr, "rackctl: unknown flag %s before the command\n%s", arg.c_str(), kUsage);
      return kExitUsage;
    } else {
      args.push_back(arg);
    }
  }
  const CommandContext context{AddressSourcesFromEnvironment(coordinator, "/proc/self/exe")};
  if (command == "status") return RunStatus(context, args);
  if (command == "generate") return RunGenerate(context, args);
  if (command == "batch") return RunBatch(context, args);
  if (command == "bench") return RunBench(context, args);
  if (command == "top") return RunTop(context, args);
  if (command == "drain") return RunDrain(context, args);
  if (command == "preflight") return RunPreflight(context, args);
  std::fprintf(stderr, "rackctl: %s\n%s",
               command.empty() ? "no command given"
                               : absl::StrCat("unknown command \"", command, "\"").c_str(),
               kUsage);
  return kExitUsage;
}
