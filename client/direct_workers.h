// DirectWorkers: rackctl bench's baseline target (`--direct`): the samples go straight to the
// workers' Serve streams, bypassing the coordinator, so that its cost — what it adds to time to
// first token — can be measured as the difference. One Serve stream per worker (addresses and
// replicas from the coordinator's topology, which must show every VM ready); each sample goes
// to the single-rank replica with the fewest samples in flight (a replica spanning ranks needs
// the coordinator's rendezvous and is skipped). Tokens are counted, not kept.
//
// Thread-safe as StreamingTarget requires: Send() on one thread, Next() on another.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "client/streaming_target.h"
#include "grpcpp/grpcpp.h"
#include "rackserve/v1/worker.grpc.pb.h"

namespace rackserve::client {

class DirectWorkers final : public StreamingTarget {
 public:
  // FAILED_PRECONDITION naming the VM when one has no address (not ready), or when no replica
  // runs on a single rank.
  static absl::StatusOr<std::unique_ptr<DirectWorkers>> Connect(const v1::Topology& topology);
  ~DirectWorkers() override;

  bool Send(size_t sample, const v1::GenerateRequest& request) override;
  void DoneSending() override;
  bool Next(SampleEvent* event) override;
  absl::Status Finish() override;

 private:
  struct Worker {
    std::string vm;
    std::unique_ptr<v1::WorkerService::Stub> stub;
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::ServeInbound, v1::ServeOutbound>> stream;
    std::mutex write_mu;  // one Write at a time
    std::thread reader;
  };
  struct Replica {
    std::string id;
    Worker* worker = nullptr;
    int64_t in_flight = 0;
  };
  struct Submission {
    size_t sample = 0;
    size_t replica = 0;
    int64_t tokens = 0;
  };

  DirectWorkers() = default;
  void ReadLoop(Worker* worker);
  // Ends the submission with `error` ("" when it finished); mu_ held.
  void EndLocked(uint64_t handle, const std::string& error);

  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<Replica> replicas_;  // guarded by mu_ (in_flight)

  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<SampleEvent> events_;                          // guarded by mu_
  absl::flat_hash_map<uint64_t, Submission> submissions_;  // by handle; guarded by mu_
  uint64_t next_handle_ = 1;                                // guarded by mu_
  int64_t readers_left_ = 0;                                // guarded by mu_
  bool done_sending_ = false;                               // guarded by mu_
  absl::Status broken_;                                     // guarded by mu_
};

}  // namespace rackserve::client
