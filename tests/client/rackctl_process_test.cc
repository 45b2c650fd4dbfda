// rackctl against a real rack on loopback: rackserve-coordinator and two rackserve-worker
// processes serving a tiny generated model (no tokenizer: ids only). Runs the commands the
// deploy scripts use and checks their output and exit codes (0 ok, 1 failed, 2 bad usage).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/model/model_generator.h"
#include "tests/support/child_process.h"

namespace rackserve::client {
namespace {

using ::rackserve::testing::Child;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(40);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

class RackctlProcessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/rackctl_rack_" + std::to_string(getpid()));
    model::RandomModelOptions model_options;
    model_options.config = *model::PresetModelConfig("tiny");
    model_options.seed = 5;
    model_options.with_tokenizer = false;
    ASSERT_TRUE(model::WriteRandomModel(*dir_ + "/model", model_options).ok());
    std::ofstream(*dir_ + "/rack.yaml")
        << "model: " << *dir_ << "/model\nvms:\n  - {name: vm0, devices: 1}\n"
        << "  - {name: vm1, devices: 1}\nlayouts:\n  tp1: {tp: 1, pp: 1}\nlayout: tp1\n";
    coordinator_ = new Child({RACKSERVE_COORDINATOR_BINARY, "--topology", *dir_ + "/rack.yaml",
                              "--listen", "127.0.0.1:0"},
                             *dir_ + "/coordinator.log");
    address_ = new std::string(coordinator_->WaitListening(kWait));
    ASSERT_FALSE(address_->empty()) << coordinator_->Log();
    for (const char* vm : {"vm0", "vm1"}) {
      workers_.push_back(
          new Child({RACKSERVE_WORKER_BINARY, "--coordinator", *address_, "--vm", vm, "--model",
                     *dir_ + "/model", "--devices", "1", "--threads", "1", "--kv-cache-mb", "32"},
                    absl::StrCat(*dir_, "/", vm, ".log")));
    }
  }
  static void TearDownTestSuite() {
    for (Child* w : workers_) delete w;
    workers_.clear();
    delete coordinator_;
    std::error_code ignored;
    std::filesystem::remove_all(*dir_, ignored);
    delete dir_;
    delete address_;
  }

  // Runs rackctl with `args` (after --coordinator ADDR unless with_address is false).
  static Result Rackctl(const std::vector<std::string>& args, bool with_address = true,
                        const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {RACKCTL_BINARY};
    if (with_address) argv.insert(argv.end(), {"--coordinator", *address_});
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = absl::StrCat(*dir_, "/rackctl_", ++runs_, ".log");
    Child rackctl(argv, log, "", env);
    const int exit_code = rackctl.WaitExit(absl::InfiniteDuration());
    return {exit_code, ReadFile(log)};
  }

  static std::string* dir_;
  static std::string* address_;
  static Child* coordinator_;
  static std::vector<Child*> workers_;
  static int runs_;
};

std::string* RackctlProcessTest::dir_ = nullptr;
std::string* RackctlProcessTest::address_ = nullptr;
Child* RackctlProcessTest::coordinator_ = nullptr;
std::vector<Child*> RackctlProcessTest::workers_;
int RackctlProcessTest::runs_ = 0;

TEST_F(RackctlProcessTest, CommandsAgainstARealRack) {
  // status: ready within the wait, the address read from $RACKSERVE_RACK_DIR/coordinator.addr.
  std::filesystem::create_directories(*dir_ + "/rack");
  std::ofstream(*dir_ + "/rack/coordinator.addr") << *address_ << "\n";
  Result r =
      Rackctl({"status", "--wait-ready", "40"}, false, {"RACKSERVE_RACK_DIR=" + *dir_ + "/rack"});
  ASSERT_EQ(r.exit_code, 0) << r.output << coordinator_->Log();
  EXPECT_THAT(r.output, HasSubstr("replicas: 2 ready of 2"));
  EXPECT_THAT(r.output, HasSubstr("vm1"));

  // preflight: one canary through each replica.
  r = Rackctl({"preflight", "--timeout", "20"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2 replicas ready, 2 canaries completed"));

  // generate: 8 ids streamed (no tokenizer in this model), and a line saying why.
  r = Rackctl({"generate", "--ids", "1,2,3", "--max-new-tokens", "8", "--ignore-eos"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("8 tokens, finish: max_tokens"));
  EXPECT_THAT(r.output, HasSubstr("no tokenizer loaded"));

  // batch: every request's result, in input order.
  {
    std::ofstream in(*dir_ + "/requests.jsonl");
    for (int i = 0; i < 5; ++i) {
      in << "{\"id\": \"q" << i << "\", \"prompt_ids\": [" << 1 + i << ", 7, 9], "
         << "\"max_new_tokens\": " << 4 + i << ", \"ignore_eos\": true}\n";
    }
  }
  r = Rackctl({"batch", "--in", *dir_ + "/requests.jsonl", "--out", *dir_ + "/results.jsonl",
               "--concurrency", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> lines =
      absl::StrSplit(ReadFile(*dir_ + "/results.jsonl"), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const auto line = nlohmann::json::parse(lines[i], nullptr, false);
    ASSERT_TRUE(line.is_object()) << lines[i];
    EXPECT_EQ(line["id"], absl::StrCat("q", i));
    EXPECT_EQ(line["token_ids"].size(), static_cast<size_t>(4 + i));
    EXPECT_TRUE(line["error"].is_null()) << lines[i];
    EXPECT_EQ(line["finish_reason"], "max_tokens");
  }

  // bench offline: 20 samples, VALID, with the rack's figure and files in --out-dir.
  r = Rackctl({"bench", "--scenario", "offline", "--count", "20", "--max-output", "16", "--out-dir",
               *dir_ + "/bench"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("Scenario : Offline"));
  EXPECT_THAT(r.output, HasSubstr("Result is : VALID"));
  EXPECT_THAT(r.output, HasSubstr("Rack tokens per second"));
  EXPECT_THAT(r.output, HasSubstr("  vm0      tokens per second"));
  EXPECT_THAT(r.output, HasSubstr("Audit                           : delivered"));
  const auto summary =
      nlohmann::json::parse(ReadFile(*dir_ + "/bench/summary.json"), nullptr, false);
  ASSERT_TRUE(summary.is_object());
  EXPECT_EQ(summary["samples_completed"], 20);
  EXPECT_GT(summary["rack"]["tokens_per_second"].get<double>(), 0);
  EXPECT_THAT(ReadFile(*dir_ + "/bench/mlperf_log_summary.txt"), HasSubstr("Result is : VALID"));

  // bench server: Poisson arrivals on one SubmitBatch stream with first-token notes, then the
  // same straight to the workers' Serve streams (--direct, the coordinator's baseline).
  for (const char* direct : {"", "--direct"}) {
    std::vector<std::string> args = {"bench", "--scenario", "server", "--count", "6",
                                     "--qps", "20", "--max-output", "8"};
    if (*direct != '\0') args.push_back(direct);
    r = Rackctl(args);
    ASSERT_EQ(r.exit_code, 0) << direct << r.output;
    EXPECT_THAT(r.output, HasSubstr("Scenario : Server"));
    EXPECT_THAT(r.output, HasSubstr("Every sample completed        : Yes (6 of 6)"));
    EXPECT_THAT(r.output, HasSubstr("TTFT samples                    : 6"));
  }
  r = Rackctl({"bench", "--scenario", "offline", "--direct"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--direct"));

  // top --once: one frame.
  r = Rackctl({"top", "--once"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("rack: "));
  EXPECT_THAT(r.output, HasSubstr("vm0"));
  EXPECT_THAT(r.output, HasSubstr("vm1/0"));

  // drain and resume; an unknown VM fails naming it.
  r = Rackctl({"drain", "vm1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vm1: draining"));
  r = Rackctl({"preflight", "--timeout", "1"});  // a draining VM is not ready for traffic
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("VM vm1 draining"));
  r = Rackctl({"drain", "vm1", "--resume"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vm1: ready"));
  r = Rackctl({"drain", "vm9"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vm9"));
}

TEST_F(RackctlProcessTest, BadUsageExitsTwoAndFailuresExitOne) {
  Result r = Rackctl({"bench", "--scenario", "nope"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\"nope\""));
  r = Rackctl({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = Rackctl({"generate", "--ids", "1", "--bogus"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--bogus"));
  // Nothing listens on port 1: a failed operation naming the address.
  r = Rackctl({"--coordinator", "127.0.0.1:1", "status", "--wait-ready", "1"}, false);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("127.0.0.1:1"));
  EXPECT_THAT(r.output, HasSubstr("not ready after 1 s"));
  r = Rackctl({"status"}, false, {"RACKSERVE_RACK_DIR=" + *dir_ + "/no-rack"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no-rack/coordinator.addr"));
  // bench --direct needs every VM's worker: a rack whose VM has none fails naming it.
  std::ofstream(*dir_ + "/lonely.yaml")
      << "model: " << *dir_ << "/model\nvms:\n  - {name: lonely, devices: 1}\n"
      << "layout: {tp: 1, pp: 1}\n";
  Child empty_rack({RACKSERVE_COORDINATOR_BINARY, "--topology", *dir_ + "/lonely.yaml", "--listen",
                    "127.0.0.1:0"},
                   *dir_ + "/lonely.log");
  const std::string lonely = empty_rack.WaitListening(kWait);
  ASSERT_FALSE(lonely.empty()) << empty_rack.Log();
  r = Rackctl({"--coordinator", lonely, "bench", "--scenario", "server", "--count", "1", "--direct"},
              false);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vm lonely has no worker"));
}

}  // namespace
}  // namespace rackserve::client
