// A rack of real processes on loopback for the multi-process tests: rackserve-coordinator and N
// rackserve-worker processes (one per VM, tp 1 pp 1 replicas) serving a generated tiny model
// (vocab 512, context 512, no tokenizer), with a client stub and greedy references computed by
// the single-process engine on the same model directory.
//
// Ownership: a TestRack owns its processes (Child, SIGKILLed and reaped when it goes away) and its
// directory (model, topology, logs; removed when it goes away). Not thread-safe, except client()
// and Stats(), which any thread may use (gRPC stubs are thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "tests/support/child_process.h"

namespace rackserve::coordinator::testing {

using ::rackserve::testing::Child;

struct TestRackOptions {
  std::string coordinator_binary;              // path of rackserve-coordinator
  std::string worker_binary;                   // path of rackserve-worker
  int workers = 3;                             // VMs vm0, vm1, ...; one worker and device each
  std::vector<std::string> coordinator_flags;  // added to --topology and --listen
  std::vector<std::string> worker_flags;       // added to every worker's flags
  uint64_t model_seed = 3;
  absl::Duration ready_timeout = absl::Seconds(60);  // until every replica is ready
};

class TestRack {
 public:
  // Writes the model and the topology, starts the coordinator and the workers (--threads 1
  // unless worker_flags say otherwise) and waits until every replica is ready and has reported
  // its KV. UNAVAILABLE, with the processes' logs, when the rack does not come up in time.
  static absl::StatusOr<std::unique_ptr<TestRack>> Start(const TestRackOptions& options);
  ~TestRack();
  TestRack(const TestRack&) = delete;
  TestRack& operator=(const TestRack&) = delete;

  v1::Rack::Stub& client() { return *client_; }
  const std::string& model_dir() const { return model_dir_; }
  Child& worker(int i) { return *workers_.at(i); }
  // Every process's log, for failure messages.
  std::string Logs() const;

  v1::RackStats Stats();
  // GetTopology, or its error.
  absl::StatusOr<v1::Topology> Topology();

 private:
  TestRack() = default;

  std::string dir_;
  std::string model_dir_;
  std::unique_ptr<Child> coordinator_;
  std::vector<std::unique_ptr<Child>> workers_;
  std::unique_ptr<v1::Rack::Stub> client_;
};

// The greedy output of the single-process engine for each prompt on `model_dir` (all submitted
// together and stepped to completion), max_new_tokens[i] tokens each, EOS ignored.
absl::StatusOr<std::vector<std::vector<int32_t>>> GreedyReference(
    const std::string& model_dir, const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<int64_t>& max_new_tokens);

}  // namespace rackserve::coordinator::testing
