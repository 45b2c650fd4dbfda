// RackService: the client API of the rack (rackserve.v1.Rack).
//
// Generate and SubmitBatch validate each request (every field, each error INVALID_ARGUMENT
// naming it) and run it on the DataPath, which routes it (Dispatcher), submits it on its
// replica's worker link and fails it over when a worker dies: the client sees every token once.
// Generate streams a request's tokens as they arrive; its last chunk carries the finish reason
// and timings (and may be empty). SubmitBatch runs a stream of requests (no thread per request;
// the stream's reader blocks while the rack has no credit for the next one) and streams each
// Completion as it finishes — and, for a request with notify_first_token, a first_token note
// as soon as its first token is out. SubmitBatchPacked is SubmitBatch with many requests per
// message and every completion ready at once in one message (under 1 MiB each). A batch's
// trailing metadata carries the job's MLPerf offline figure ("batch-tokens-per-second":
// generated tokens / time from first issue to last completion) and "batch-generated-tokens".
// Overload is RESOURCE_EXHAUSTED with "retry after <ms> ms" in the message and trailing metadata
// "retry-after-ms". A client that goes away (a Generate call or the whole SubmitBatch stream is
// cancelled or disconnects) cancels its requests, waiting or running, within ~100 ms.
//
// The audit (RackStats.audit) is the DataPath's: tokens received from each worker, delivered to
// clients, discarded.
//
// Owns a monitor thread that every 100 ms expires silent workers (Registry::ExpireDead) and
// drops what it kept for forgotten workers; stopped by Shutdown() or the destructor.
// Thread-safe. Proto types stop here.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "coordinator/data_path.h"
#include "coordinator/rack_context.h"
#include "rackserve/v1/rack.grpc.pb.h"
#include "runtime/model/tokenizer.h"

namespace rackserve::coordinator {

struct RackServiceOptions {
  int64_t vocab_size = 32000;           // prompt and stop token ids must lie in [0, vocab_size)
  int64_t max_context = 4096;           // prompt + max_new_tokens must fit
  std::string tokenizer_path;           // tokenizer.model; "" = prompt_text is refused
  int64_t max_batch_requests = 100000;  // requests in one SubmitBatch stream
  DataPathOptions data_path;
};

class RackServiceImpl final : public v1::Rack::Service {
 public:
  // Loads the tokenizer when options.tokenizer_path is set (its errors are returned).
  static absl::StatusOr<std::unique_ptr<RackServiceImpl>> Create(RackServiceOptions options,
                                                                 RackContext rack);
  ~RackServiceImpl() override;

  // Declares the worker dead and fails over every in-flight request whose current attempt runs
  // a rank on it (DataPath::OnWorkerDead).
  void OnWorkerDead(const std::string& worker_id);
  // Stops the monitor thread, ends WatchStats streams and every request. Idempotent.
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
  grpc::Status SubmitBatchPacked(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::CompletionBatch, v1::GenerateRequestBatch>* stream) override;
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
  RackServiceImpl(RackServiceOptions options, RackContext rack,
                  std::unique_ptr<model::Tokenizer> tokenizer);
  // A batch stream, either wire form: `read` gives the next message's requests (false at the
  // stream's end), `write` sends completions (false when the client is gone).
  grpc::Status RunBatch(grpc::ServerContext* context,
                        absl::FunctionRef<bool(std::vector<v1::GenerateRequest>*)> read,
                        absl::FunctionRef<bool(std::deque<v1::Completion>)> write);
  // Validates the request; assigns an id when it has none.
  absl::StatusOr<FlightRequest> Prepare(const v1::GenerateRequest& request);
  // Drops what the service and the throughput audit keep for workers the registry forgot.
  void DropForgottenWorkers();
  void Monitor();

  const RackServiceOptions options_;
  const RackContext rack_;
  const std::unique_ptr<model::Tokenizer> tokenizer_;
  const absl::Time started_;
  DataPath data_path_;
  std::atomic<int64_t> next_id_{0};

  std::atomic<bool> stopping_{false};
  std::thread monitor_;
};

}  // namespace rackserve::coordinator
