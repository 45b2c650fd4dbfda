// rackctl top [--interval S] [--once]: a live terminal view of the rack from GetStats every
// interval: rack tok/s (1/10/60 s windows) with a history line, requests and latency percentiles,
// the audit, per-VM bars with health, queue and KV use, and per-GPU figures. --once prints one
// frame and exits (tests, scripts); otherwise the screen is redrawn until interrupted.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/command.h"
#include "client/command_args.h"
#include "client/rack_connection.h"

namespace rackserve::client {
namespace {

constexpr char kCommand[] = "top";
constexpr size_t kHistory = 60;  // frames of rack tok/s in the history line
constexpr int kBarWidth = 30;

// generated tok/s over the window closest to `seconds`.
double Rate(const v1::Throughput& throughput, double seconds) {
  double best = 0, best_distance = 1e300;
  for (const v1::ThroughputWindow& w : throughput.windows()) {
    const double distance = std::abs(w.window_seconds() - seconds);
    if (distance < best_distance) {
      best_distance = distance;
      best = w.generated_tokens_per_second();
    }
  }
  return best;
}

std::string Bar(double value, double max_value) {
  const int filled =
      max_value > 0 ? static_cast<int>(std::round(kBarWidth * std::min(1.0, value / max_value)))
                    : 0;
  return std::string(filled, '#') + std::string(kBarWidth - filled, '.');
}

std::string History(const std::deque<double>& history) {
  static const char kLevels[] = " .:-=+*#%@";
  const double peak = history.empty() ? 0 : *std::max_element(history.begin(), history.end());
  std::string out;
  for (double v : history) {
    const int level = peak > 0 ? static_cast<int>(std::round(9 * v / peak)) : 0;
    out += kLevels[std::clamp(level, 0, 9)];
  }
  return out;
}

std::string Frame(const std::string& address, const v1::RackStats& s,
                  const std::deque<double>& history) {
  std::string out;
  absl::StrAppendFormat(&out, "rackserve top  coordinator %s  uptime %.0f s\n", address,
                        s.uptime_seconds());
  absl::StrAppendFormat(&out, "rack: %.1f tok/s (1 s)  %.1f (10 s)  %.1f (60 s)  total %d tokens\n",
                        Rate(s.rack(), 1), Rate(s.rack(), 10), Rate(s.rack(), 60),
                        s.rack().generated_tokens_total());
  absl::StrAppend(&out, "history [", History(history), "]\n");
  absl::StrAppendFormat(&out,
                        "requests: %d in flight, %d queued, %d completed   TTFT p50/p99 %.1f/%.1f "
                        "ms   TPOT p50/p99 %.1f/%.1f ms\n",
                        s.requests_in_flight(), s.requests_queued(), s.requests_completed(),
                        s.ttft().p50_seconds() * 1e3, s.ttft().p99_seconds() * 1e3,
                        s.tpot().p50_seconds() * 1e3, s.tpot().p99_seconds() * 1e3);
  absl::StrAppend(&out, "audit: ", AuditLine(s.audit()), "\n");
  double peak = 0;
  for (const v1::ScopeStats& vm : s.vms()) peak = std::max(peak, Rate(vm.throughput(), 10));
  absl::StrAppendFormat(&out, "\n%-8s %-9s %10s  %-*s %5s %5s  %s\n", "VM", "state", "tok/s 10s",
                        kBarWidth, "", "run", "wait", "KV blocks");
  for (const v1::ScopeStats& vm : s.vms()) {
    const double kv = vm.kv_blocks_total() > 0 ? 100.0 * static_cast<double>(vm.kv_blocks_used()) /
                                                     static_cast<double>(vm.kv_blocks_total())
                                               : 0;
    absl::StrAppendFormat(&out, "%-8s %-9s %10.1f  %s %5d %5d  %d/%d (%.0f%%)\n", vm.name(),
                          vm.state().empty() ? "-" : vm.state(), Rate(vm.throughput(), 10),
                          Bar(Rate(vm.throughput(), 10), peak), vm.running(), vm.waiting(),
                          vm.kv_blocks_used(), vm.kv_blocks_total(), kv);
  }
  absl::StrAppend(&out, "\nGPU (tok/s 10 s):");
  int column = 0;
  for (const v1::ScopeStats& device : s.devices()) {
    if (column++ % 6 == 0) absl::StrAppend(&out, "\n");
    absl::StrAppendFormat(&out, "  %-8s %8.1f", device.name(), Rate(device.throughput(), 10));
  }
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace

int RunTop(const CommandContext& context, const std::vector<std::string>& argv) {
  absl::StatusOr<CommandArgs> args = CommandArgs::Parse(argv, {"interval"}, {"once"});
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  if (!args->positional().empty()) {
    return ReportUsage(kCommand, absl::InvalidArgumentError(absl::StrCat(
                                     "unexpected argument \"", args->positional()[0], "\"")));
  }
  absl::StatusOr<double> interval = args->Double("interval", 1.0, 0.05, 3600);
  if (!interval.ok()) return ReportUsage(kCommand, interval.status());
  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());
  std::deque<double> history;
  while (true) {
    grpc::ClientContext call;
    call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RackStats stats;
    const grpc::Status status = (*rack)->stub().GetStats(&call, v1::StatsRequest(), &stats);
    if (!status.ok()) return ReportFailure(kCommand, (*rack)->Convert(status, "GetStats"));
    history.push_back(Rate(stats.rack(), 1));
    if (history.size() > kHistory) history.pop_front();
    const std::string frame = Frame((*rack)->address(), stats, history);
    if (args->Has("once")) {
      std::fputs(frame.c_str(), stdout);
      return kExitOk;
    }
    std::printf("\033[H\033[2J%s", frame.c_str());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(*interval));
  }
}

}  // namespace rackserve::client
