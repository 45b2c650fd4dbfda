// RackService: the client API of the rack (rackserve.v1.Rack).
//
// Generate validates a request (every field, each error INVALID_ARGUMENT naming it), admits and
// routes it (Dispatcher), submits it to the replica's leader worker (WorkerService.Submit) and
// streams its tokens back. Failover: when a worker of the request's replica dies (heartbeat
// timeout, its heartbeat stream ends, its channel's keepalive fails, or the Submit stream breaks
// with UNAVAILABLE) the request is re-submitted to another replica with resume_token_ids = the
// tokens delivered so far, and chunks are de-duplicated by index (TokenLedger): the client sees
// every token once. Each attempt remembers the workers it was issued to, so news of an old
// worker's death never touches a request running on its VM's newer worker. SubmitBatch runs a
// stream of requests the same way and streams each Completion as it finishes; its trailing
// metadata carries the job's MLPerf offline figure ("batch-tokens-per-second": generated tokens /
// time from first issue to last completion) and "batch-generated-tokens". Overload is
// RESOURCE_EXHAUSTED with "retry after <ms> ms" in the message and trailing metadata
// "retry-after-ms". A client that goes away (a Generate call or the whole SubmitBatch stream is
// cancelled or disconnects) cancels its requests, waiting or running, within ~100 ms.
//
// The audit (RackStats.audit): every generated token read from a worker is counted as received
// from that worker; those not delivered to the client (duplicates after a failover, or after the
// client went away) as discarded (RackThroughput).
//
// Owns a monitor thread that every 100 ms expires silent workers (Registry::ExpireDead), drops
// what it kept for forgotten workers, and cancels requests whose client went away; stopped by
// Shutdown() or the destructor. Thread-safe. Proto types stop here.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/rack_context.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "runtime/model/tokenizer.h"

namespace rackserve::coordinator {

struct RackServiceOptions {
  int64_t vocab_size = 32000;           // prompt and stop token ids must lie in [0, vocab_size)
  int64_t max_context = 4096;           // prompt + max_new_tokens must fit
  std::string tokenizer_path;           // tokenizer.model; "" = prompt_text is refused
  int64_t max_batch_requests = 100000;  // requests in one SubmitBatch stream
  int64_t batch_concurrency = 256;      // requests of one SubmitBatch in flight at once
  absl::Duration dispatch_timeout = absl::Seconds(60);  // wait for a replica before UNAVAILABLE
  int max_attempts = 4;  // replicas one request may be tried on (failover)
};

class RackServiceImpl final : public v1::Rack::Service {
 public:
  // Loads the tokenizer when options.tokenizer_path is set (its errors are returned).
  static absl::StatusOr<std::unique_ptr<RackServiceImpl>> Create(RackServiceOptions options,
                                                                 RackContext rack);
  ~RackServiceImpl() override;

  // Declares the worker dead and fails over every in-flight request whose current attempt runs
  // a rank on it (also one between placement and submission). Requests on a newer worker of the
  // same VM are not touched.
  void OnWorkerDead(const std::string& worker_id);
  // Stops the monitor thread and ends WatchStats streams. Idempotent.
  void Shutdown();

  // The rack's statistics, as GetStats answers (the HTTP endpoint serves them too).
  void FillStats(v1::RackStats* stats) const;
  // The rack's topology with each VM's and replica's state, as GetTopology answers.
  void FillTopology(v1::Topology* topology) const;

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::TokenChunk>* writer) override;
  grpc::Status SubmitBatch(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::Completion, v1::GenerateRequest>* stream) override;
  grpc::Status Cancel(grpc::ServerContext* context, const v1::CancelRequest* request,
                      v1::CancelResponse* response) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::StatsRequest* request,
                        v1::RackStats* response) override;
  grpc::Status WatchStats(grpc::ServerContext* context, const v1::WatchStatsRequest* request,
                          grpc::ServerWriter<v1::RackStats>* writer) override;
  grpc::Status GetTopology(grpc::ServerContext* context, const v1::TopologyRequest* request,
                           v1::Topology* response) override;
  // Drains a VM (no new requests are routed to replicas with a rank on it; its worker is asked to
  // drain) or, with resume, admits to it again. INVALID_ARGUMENT "vm: empty"; NOT_FOUND naming a
  // VM not in the topology.
  grpc::Status DrainVm(grpc::ServerContext* context, const v1::DrainVmRequest* request,
                       v1::DrainVmResponse* response) override;

 private:
  struct InFlight;
  struct Prepared;
  // Where a request's output goes (a Generate stream, a batch Completion); false: client gone.
  using ChunkSink = std::function<bool(const v1::TokenChunk&)>;
  // True once the request's client has gone (its call was cancelled or disconnected).
  using ClientGone = std::function<bool()>;

  RackServiceImpl(RackServiceOptions options, RackContext rack,
                  std::unique_ptr<model::Tokenizer> tokenizer);
  // Validates the request and tracks it as in flight. `client_gone` must stay callable until
  // Untrack(id).
  absl::StatusOr<Prepared> Prepare(const v1::GenerateRequest& request, ClientGone client_gone);
  // Runs one admitted request to its end; emits its output through `sink`.
  absl::Status Run(Prepared& request, const ChunkSink& sink);
  void Untrack(const std::string& id);
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);
  double CompletionsPerSecond() const;
  // Requests whose current attempt runs on a replica with a rank on `vm`.
  int64_t RequestsOnVm(const std::string& vm) const;
  // Cancels the requests whose client went away.
  void CancelAbandoned();
  // Drops what the service and the throughput audit keep for workers the registry forgot.
  void DropForgottenWorkers();
  void Monitor();

  const RackServiceOptions options_;
  const RackContext rack_;
  const std::unique_ptr<model::Tokenizer> tokenizer_;
  const absl::Time started_;

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<InFlight>> in_flight_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mutex_);
  RateWindow completions_ ABSL_GUARDED_BY(mutex_);
  int64_t completed_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t next_id_ ABSL_GUARDED_BY(mutex_) = 0;

  std::atomic<bool> stopping_{false};
  std::thread monitor_;
};

}  // namespace rackserve::coordinator
