#include "coordinator/rack_service.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/admission.h"
#include "coordinator/token_ledger.h"
#include "grpc/grpc.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/wire_conversion.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "runtime/base/status_macros.h"

namespace rackserve::coordinator {
namespace {

constexpr absl::Duration kMonitorPeriod = absl::Milliseconds(100);
// Keepalive on worker channels: a hung or partitioned worker breaks its Submit streams within
// kKeepaliveTimeMs + kKeepaliveTimeoutMs even when its heartbeats are not the signal. (The
// worker's server must accept pings this often: GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_
// DATA_MS <= kKeepaliveTimeMs and GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, else it answers with
// GOAWAY "too_many_pings".)
constexpr int kKeepaliveTimeMs = 1000;
constexpr int kKeepaliveTimeoutMs = 2000;

const char* StateName(WorkerState state) {
  switch (state) {
    case WorkerState::kReady:
      return "ready";
    case WorkerState::kDraining:
      return "draining";
    case WorkerState::kDead:
      return "dead";
  }
  return "dead";
}

const char* ReplicaStateName(const ReplicaStatus& status) {
  return status.live ? "ready" : status.draining ? "draining" : "down";
}

// The throughput of a scope no worker has reported for yet: zero in every window.
ScopeThroughput NothingReported(const std::string& name) {
  ScopeThroughput scope;
  scope.name = name;
  for (int seconds : kWindowSeconds) scope.windows.push_back({static_cast<double>(seconds), 0, 0});
  return scope;
}

void FillLoad(const LoadFigures& load, v1::ScopeStats* out) {
  out->set_running(load.running);
  out->set_waiting(load.waiting);
  out->set_kv_blocks_used(load.kv_blocks_used);
  out->set_kv_blocks_total(load.kv_blocks_total);
}

bool OnVm(const ReplicaSpec& replica, const std::string& vm) {
  return std::any_of(replica.ranks.begin(), replica.ranks.end(),
                     [&](const RankSpec& r) { return r.vm == vm; });
}

void FillThroughput(const ScopeThroughput& scope, v1::Throughput* out) {
  for (const WindowRates& w : scope.windows) {
    v1::ThroughputWindow* window = out->add_windows();
    window->set_window_seconds(w.window_seconds);
    window->set_generated_tokens_per_second(w.generated_per_second);
    window->set_prompt_tokens_per_second(w.prompt_per_second);
  }
  out->set_generated_tokens_total(static_cast<int64_t>(scope.generated_total + 0.5));
  out->set_prompt_tokens_total(static_cast<int64_t>(scope.prompt_total + 0.5));
}

}  // namespace

// One request while the coordinator runs it: what Cancel, failover, DrainVm and the monitor act
// on. Between attempts replica_id and worker_ids are empty.
struct RackServiceImpl::InFlight {
  ClientGone client_gone;  // set before the flight is tracked, then read-only
  absl::Mutex mutex;
  bool cancelled ABSL_GUARDED_BY(mutex) = false;
  bool failover ABSL_GUARDED_BY(mutex) = false;  // a worker of its attempt died: re-submit
  std::string replica_id ABSL_GUARDED_BY(mutex);
  std::vector<std::string> worker_ids ABSL_GUARDED_BY(mutex);  // the attempt's Lease::worker_ids
  grpc::ClientContext* upstream ABSL_GUARDED_BY(mutex) = nullptr;  // the current Submit call

  // Cancelled by the client (Cancel, or the client went away).
  bool Cancelled() {
    {
      absl::MutexLock lock(&mutex);
      if (cancelled) return true;
    }
    if (!client_gone()) return false;
    absl::MutexLock lock(&mutex);
    cancelled = true;
    return true;
  }
};

// A validated request.
struct RackServiceImpl::Prepared {
  std::string id;
  std::vector<int32_t> prompt;
  sampling::SamplingParams params;
  absl::Time arrival;
  std::string pinned_replica;  // GenerateRequest.replica_id: this replica only
  std::shared_ptr<InFlight> flight;
};

absl::StatusOr<std::unique_ptr<RackServiceImpl>> RackServiceImpl::Create(RackServiceOptions options,
                                                                         RackContext rack) {
  std::unique_ptr<model::Tokenizer> tokenizer;
  if (!options.tokenizer_path.empty()) {
    RS_ASSIGN_OR_RETURN(tokenizer, model::Tokenizer::Load(options.tokenizer_path));
  }
  return std::unique_ptr<RackServiceImpl>(
      new RackServiceImpl(std::move(options), rack, std::move(tokenizer)));
}

RackServiceImpl::RackServiceImpl(RackServiceOptions options, RackContext rack,
                                 std::unique_ptr<model::Tokenizer> tokenizer)
    : options_(std::move(options)),
      rack_(rack),
      tokenizer_(std::move(tokenizer)),
      started_(rack.clock->Now()),
      monitor_([this] { Monitor(); }) {}

RackServiceImpl::~RackServiceImpl() { Shutdown(); }

void RackServiceImpl::Shutdown() {
  stopping_ = true;
  if (monitor_.joinable()) monitor_.join();
}

void RackServiceImpl::Monitor() {
  while (!stopping_) {
    for (const std::string& worker_id : rack_.registry->ExpireDead()) OnWorkerDead(worker_id);
    DropForgottenWorkers();
    CancelAbandoned();
    absl::SleepFor(kMonitorPeriod);
  }
}

void RackServiceImpl::DropForgottenWorkers() {
  for (const ForgottenWorker& worker : rack_.registry->TakeForgotten()) {
    rack_.throughput->RetireSource(worker.worker_id);
    absl::MutexLock lock(&mutex_);
    channels_.erase(worker.address);  // callers of ChannelTo keep their copy alive
  }
}

void RackServiceImpl::CancelAbandoned() {
  bool any = false;
  {
    // Under mutex_: a flight's client_gone stays callable while it is tracked.
    absl::MutexLock lock(&mutex_);
    for (auto& [id, flight] : in_flight_) {
      {
        absl::MutexLock flight_lock(&flight->mutex);
        if (flight->cancelled) continue;
      }
      if (!flight->client_gone()) continue;
      absl::MutexLock flight_lock(&flight->mutex);
      flight->cancelled = true;
      if (flight->upstream != nullptr) flight->upstream->TryCancel();
      any = true;
    }
  }
  if (any) rack_.dispatcher->Wake();
}

void RackServiceImpl::OnWorkerDead(const std::string& worker_id) {
  // Marked dead first: an attempt published after the scan below sees it in Run.
  rack_.registry->MarkDead(worker_id);
  {
    absl::MutexLock lock(&mutex_);
    for (auto& [id, flight] : in_flight_) {
      absl::MutexLock flight_lock(&flight->mutex);
      if (std::find(flight->worker_ids.begin(), flight->worker_ids.end(), worker_id) ==
          flight->worker_ids.end()) {
        continue;
      }
      flight->failover = true;
      if (flight->upstream != nullptr) flight->upstream->TryCancel();
    }
  }
  rack_.dispatcher->Wake();
}

absl::StatusOr<RackServiceImpl::Prepared> RackServiceImpl::Prepare(
    const v1::GenerateRequest& request, ClientGone client_gone) {
  Prepared out;
  out.arrival = rack_.clock->Now();
  if (!request.prompt_text().empty() && request.prompt_token_ids_size() > 0) {
    return absl::InvalidArgumentError(
        "prompt_text: give prompt_token_ids or prompt_text, not both");
  }
  if (!request.prompt_text().empty()) {
    if (tokenizer_ == nullptr) {
      return absl::InvalidArgumentError(
          "prompt_text: the model has no tokenizer.model; send prompt_token_ids");
    }
    RS_ASSIGN_OR_RETURN(out.prompt, tokenizer_->Encode(request.prompt_text(), /*add_bos=*/true));
  } else {
    out.prompt.assign(request.prompt_token_ids().begin(), request.prompt_token_ids().end());
  }
  if (out.prompt.empty()) {
    return absl::InvalidArgumentError("prompt_token_ids: the prompt is empty");
  }
  for (size_t i = 0; i < out.prompt.size(); ++i) {
    if (out.prompt[i] < 0 || out.prompt[i] >= options_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_token_ids[", i, "]: ", out.prompt[i],
                                                     " outside the vocabulary [0, ",
                                                     options_.vocab_size, ")"));
    }
  }
  RS_ASSIGN_OR_RETURN(out.params, wire::FromProto(request.sampling(), options_.vocab_size));
  if (!request.replica_id().empty() &&
      rack_.topology->FindReplica(request.replica_id()) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("replica_id: no replica \"", request.replica_id(), "\" in the topology"));
  }
  out.pinned_replica = request.replica_id();
  const int64_t total = static_cast<int64_t>(out.prompt.size()) + out.params.max_new_tokens;
  if (total > options_.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_new_tokens: prompt (", out.prompt.size(), ") + max_new_tokens (",
                     out.params.max_new_tokens, ") = ", total, " exceeds the context (",
                     options_.max_context, ")"));
  }
  out.flight = std::make_shared<InFlight>();
  out.flight->client_gone = std::move(client_gone);
  absl::MutexLock lock(&mutex_);
  out.id = request.request_id().empty() ? absl::StrCat("rack-", next_id_++) : request.request_id();
  if (!in_flight_.emplace(out.id, out.flight).second) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: \"", out.id, "\" is already in flight"));
  }
  return out;
}

void RackServiceImpl::Untrack(const std::string& id) {
  absl::MutexLock lock(&mutex_);
  in_flight_.erase(id);
}

std::shared_ptr<grpc::Channel> RackServiceImpl::ChannelTo(const std::string& address) {
  absl::MutexLock lock(&mutex_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // keep pinging a quiet stream
    channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  return channel;
}

double RackServiceImpl::CompletionsPerSecond() const {
  absl::MutexLock lock(&mutex_);
  return completions_.Rate(rack_.clock->Now(), absl::Seconds(10));
}

int64_t RackServiceImpl::RequestsOnVm(const std::string& vm) const {
  int64_t count = 0;
  absl::MutexLock lock(&mutex_);
  for (const auto& [id, flight] : in_flight_) {
    absl::MutexLock flight_lock(&flight->mutex);
    if (flight->replica_id.empty()) continue;
    const ReplicaSpec* replica = rack_.topology->FindReplica(flight->replica_id);
    if (replica != nullptr && OnVm(*replica, vm)) ++count;
  }
  return count;
}

absl::Status RackServiceImpl::Run(Prepared& request, const ChunkSink& sink) {
  InFlight& flight = *request.flight;
  auto cancelled = [&flight] { return flight.Cancelled(); };
  TokenLedger ledger;
  v1::SamplingParams sampling;
  wire::ToProto(request.params, &sampling);
  std::optional<absl::Time> first_dispatch, first_token;
  const int64_t prompt_tokens = static_cast<int64_t>(request.prompt.size());

  // The last chunk of the request, with its timings.
  auto final_chunk = [&](v1::FinishReason reason, std::vector<int32_t> tokens) {
    const absl::Time now = rack_.clock->Now();
    v1::TokenChunk out;
    out.set_request_id(request.id);
    out.set_first_index(static_cast<int64_t>(ledger.delivered().size() - tokens.size()));
    out.mutable_token_ids()->Add(tokens.begin(), tokens.end());
    out.set_finish_reason(reason);
    out.set_prompt_tokens(prompt_tokens);
    v1::Timings* t = out.mutable_timings();
    t->set_queue_seconds(absl::ToDoubleSeconds(first_dispatch.value_or(now) - request.arrival));
    t->set_ttft_seconds(
        first_token.has_value() ? absl::ToDoubleSeconds(*first_token - request.arrival) : 0);
    t->set_total_seconds(absl::ToDoubleSeconds(now - request.arrival));
    if (rack_.latency != nullptr && first_token.has_value()) {
      rack_.latency->RecordRequest(t->ttft_seconds(), t->total_seconds(),
                                   static_cast<int64_t>(ledger.delivered().size()));
    }
    {
      absl::MutexLock lock(&mutex_);
      completions_.Add(now, 1);
      ++completed_;
    }
    rack_.throughput->RecordPrompt(now, prompt_tokens);
    return out;
  };

  absl::Status last_error = absl::UnavailableError("no attempt made");
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    const int64_t delivered_before = static_cast<int64_t>(ledger.delivered().size());
    const int64_t cost = prompt_tokens + request.params.max_new_tokens - delivered_before;
    absl::StatusOr<Lease> lease =
        rack_.dispatcher->Acquire(request.prompt, cost, cancelled, options_.dispatch_timeout,
                                  CompletionsPerSecond(), request.pinned_replica);
    if (!lease.ok()) {
      if (cancelled()) {
        sink(final_chunk(v1::FINISH_REASON_CANCELLED, {}));
        return absl::OkStatus();
      }
      return lease.status();
    }
    if (!first_dispatch.has_value()) first_dispatch = rack_.clock->Now();

    grpc::ClientContext context;
    {
      absl::MutexLock lock(&flight.mutex);
      flight.upstream = &context;
      flight.failover = false;
      flight.replica_id = lease->replica_id;
      flight.worker_ids = lease->worker_ids;
      if (flight.cancelled) context.TryCancel();
    }
    // A worker that died after the lease was issued but before the attempt was published above
    // was missed by OnWorkerDead's scan; OnWorkerDead marks the registry first, so it shows here.
    const bool stale_lease =
        std::any_of(lease->worker_ids.begin(), lease->worker_ids.end(),
                    [&](const std::string& id) { return !rack_.registry->Alive(id); });
    if (stale_lease) {
      absl::MutexLock lock(&flight.mutex);
      flight.failover = true;
      context.TryCancel();
    }
    v1::ReplicaRequest upstream_request;
    upstream_request.set_replica_id(lease->replica_id);
    upstream_request.set_request_id(request.id);
    upstream_request.mutable_prompt_token_ids()->Add(request.prompt.begin(), request.prompt.end());
    *upstream_request.mutable_sampling() = sampling;
    upstream_request.mutable_resume_token_ids()->Add(ledger.delivered().begin(),
                                                     ledger.delivered().end());
    std::unique_ptr<v1::WorkerService::Stub> stub =
        v1::WorkerService::NewStub(ChannelTo(lease->address));
    std::unique_ptr<grpc::ClientReader<v1::TokenChunk>> reader =
        stub->Submit(&context, upstream_request);

    v1::TokenChunk chunk;
    v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
    absl::Status chunk_error;
    bool client_gone = false;
    // Every chunk read is counted as received from the leader; what does not reach the client
    // is counted as discarded. After a bad chunk or a gone client the stream is drained.
    while (reader->Read(&chunk)) {
      const int64_t received = chunk.token_ids_size();
      rack_.throughput->RecordReceived(lease->leader_worker_id, received);
      if (client_gone || !chunk_error.ok()) {
        rack_.throughput->RecordDiscarded(received);
        continue;
      }
      const int64_t first_index = static_cast<int64_t>(ledger.delivered().size());
      absl::StatusOr<std::vector<int32_t>> fresh = ledger.Accept(
          chunk.first_index(),
          std::span<const int32_t>(chunk.token_ids().data(), chunk.token_ids().size()));
      if (!fresh.ok()) {
        rack_.throughput->RecordDiscarded(received);
        chunk_error =
            absl::Status(fresh.status().code(),
                         absl::StrCat("replica ", lease->replica_id, " sent request ", request.id,
                                      " a bad chunk: ", std::string(fresh.status().message())));
        context.TryCancel();
        continue;
      }
      const int64_t fresh_count = static_cast<int64_t>(fresh->size());
      rack_.throughput->RecordDiscarded(received - fresh_count);  // resent across a failover
      const absl::Time now = rack_.clock->Now();
      if (fresh_count > 0) {
        rack_.dispatcher->Delivered(*lease, fresh_count);
        if (!first_token.has_value()) first_token = now;
      }
      finish = chunk.finish_reason();
      v1::TokenChunk out;
      if (finish != v1::FINISH_REASON_UNSPECIFIED) {
        out = final_chunk(finish, *fresh);
      } else if (fresh->empty()) {
        continue;
      } else {
        out.set_request_id(request.id);
        out.set_first_index(first_index);
        out.mutable_token_ids()->Add(fresh->begin(), fresh->end());
      }
      if (!sink(out)) {
        rack_.throughput->RecordDiscarded(fresh_count);
        finish = v1::FINISH_REASON_UNSPECIFIED;
        client_gone = true;
        context.TryCancel();
        continue;
      }
      rack_.throughput->RecordDelivered(now, fresh_count);
      if (finish != v1::FINISH_REASON_UNSPECIFIED) break;
    }
    if (finish != v1::FINISH_REASON_UNSPECIFIED) context.TryCancel();  // do not wait for the end
    const grpc::Status status = reader->Finish();
    bool failover = false;
    {
      absl::MutexLock lock(&flight.mutex);
      flight.upstream = nullptr;
      flight.replica_id.clear();
      flight.worker_ids.clear();
      failover = flight.failover;
    }
    const int64_t delivered_now = static_cast<int64_t>(ledger.delivered().size());
    rack_.dispatcher->Release(*lease, cost - (delivered_now - delivered_before));

    if (!chunk_error.ok()) return chunk_error;
    if (finish != v1::FINISH_REASON_UNSPECIFIED) return absl::OkStatus();
    if (client_gone) return absl::CancelledError("the client went away");
    if (cancelled()) {
      sink(final_chunk(v1::FINISH_REASON_CANCELLED, {}));
      return absl::OkStatus();
    }
    if (failover || status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      // The Submit stream broke: the worker it was issued to is dead — unless the worker itself
      // answered (its replica failed or drains; wire::kWorkerAnsweredMetadata) or the
      // coordinator is draining it.
      const bool worker_answered =
          context.GetServerTrailingMetadata().count(wire::kWorkerAnsweredMetadata) > 0;
      if (worker_answered) rack_.dispatcher->OnRefused(lease->replica_id);
      if (!failover && !worker_answered &&
          !rack_.registry->DrainRequested(lease->leader_worker_id)) {
        OnWorkerDead(lease->leader_worker_id);
      }
      last_error = absl::UnavailableError(
          absl::StrCat("replica ", lease->replica_id, " failed: ", status.error_message()));
      continue;
    }
    if (status.ok()) {
      return absl::DataLossError(absl::StrCat("replica ", lease->replica_id, " ended request ",
                                              request.id, " without a finish reason"));
    }
    return wire::FromGrpcStatus(status);
  }
  return absl::UnavailableError(
      absl::StrCat("request ", request.id, ": gave up after ", options_.max_attempts,
                   " replicas failed; last: ", std::string(last_error.message())));
}

namespace {

grpc::Status WithRetryHint(grpc::ServerContext* context, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    const int64_t ms = RetryAfterMillisFromMessage(std::string(status.message()));
    if (ms > 0) context->AddTrailingMetadata("retry-after-ms", absl::StrCat(ms));
  }
  return wire::ToGrpcStatus(status);
}

}  // namespace

grpc::Status RackServiceImpl::Generate(grpc::ServerContext* context,
                                       const v1::GenerateRequest* request,
                                       grpc::ServerWriter<v1::TokenChunk>* writer) {
  absl::StatusOr<Prepared> prepared =
      Prepare(*request, [context] { return context->IsCancelled(); });
  if (!prepared.ok()) return wire::ToGrpcStatus(prepared.status());
  const absl::Status status =
      Run(*prepared, [writer](const v1::TokenChunk& chunk) { return writer->Write(chunk); });
  Untrack(prepared->id);
  return WithRetryHint(context, status);
}

grpc::Status RackServiceImpl::SubmitBatch(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::Completion, v1::GenerateRequest>* stream) {
  // One thread reads the requests and starts one thread per admitted request; completions queue
  // up and only this handler thread writes them. Only this thread asks the call whether the client
  // is gone (every 100 ms, into `gone`): ServerContext::IsCancelled plucks the call's completion
  // queue, which takes at most 6 concurrent pluckers — hundreds of request threads asking made
  // the stream's own Read/Write plucks fail (a lost completion, then an aborted process).
  // Shared with the request threads, which may outlive this frame by their last instructions.
  // When the batch's client goes away its requests are cancelled (their flights' client_gone),
  // so every thread ends and this handler returns.
  struct Batch {
    absl::Mutex mutex;
    int64_t active ABSL_GUARDED_BY(mutex) = 0;  // request threads running
    bool reading ABSL_GUARDED_BY(mutex) = true;
    std::deque<v1::Completion> ready ABSL_GUARDED_BY(mutex);  // to write, in completion order
    absl::CondVar changed;
    BatchJobMeter meter ABSL_GUARDED_BY(mutex);
    std::atomic<bool> gone{false};  // the client went away
  };
  auto batch = std::make_shared<Batch>();
  auto finish = [batch](v1::Completion completion) {
    absl::MutexLock lock(&batch->mutex);
    batch->ready.push_back(std::move(completion));
    batch->changed.SignalAll();
  };
  auto error_completion = [](const std::string& id, const absl::Status& status) {
    v1::Completion completion;
    completion.set_request_id(id);
    completion.set_error_code(static_cast<int32_t>(status.code()));
    completion.set_error_message(std::string(status.message()));
    return completion;
  };

  std::thread reader([&] {
    v1::GenerateRequest request;
    int64_t count = 0;
    while (stream->Read(&request)) {
      if (++count > options_.max_batch_requests) {
        finish(error_completion(request.request_id(),
                                absl::InvalidArgumentError(
                                    absl::StrCat("batch: more than ", options_.max_batch_requests,
                                                 " requests in one SubmitBatch stream"))));
        continue;
      }
      absl::StatusOr<Prepared> prepared = Prepare(request, [batch] { return batch->gone.load(); });
      if (!prepared.ok()) {
        finish(error_completion(request.request_id(), prepared.status()));
        continue;
      }
      {
        absl::MutexLock lock(&batch->mutex);
        while (batch->active >= options_.batch_concurrency) batch->changed.Wait(&batch->mutex);
        ++batch->active;
        batch->meter.Issued(rack_.clock->Now());
      }
      std::thread([this, batch, error_completion, p = std::move(*prepared)]() mutable {
        v1::Completion completion;
        completion.set_request_id(p.id);
        const absl::Status status = Run(p, [&completion, &batch](const v1::TokenChunk& chunk) {
          if (batch->gone) return false;
          completion.mutable_token_ids()->Add(chunk.token_ids().begin(), chunk.token_ids().end());
          if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
            completion.set_finish_reason(chunk.finish_reason());
            *completion.mutable_timings() = chunk.timings();
            completion.set_prompt_tokens(chunk.prompt_tokens());
          }
          return true;
        });
        Untrack(p.id);
        const int64_t generated = completion.token_ids_size();
        absl::MutexLock lock(&batch->mutex);
        batch->ready.push_back(status.ok() ? std::move(completion)
                                           : error_completion(p.id, status));
        batch->meter.Completed(rack_.clock->Now(), generated);
        --batch->active;
        batch->changed.SignalAll();
      }).detach();
    }
    absl::MutexLock lock(&batch->mutex);
    batch->reading = false;
    batch->changed.SignalAll();
  });

  while (true) {
    std::deque<v1::Completion> ready;
    {
      absl::MutexLock lock(&batch->mutex);
      while (batch->ready.empty() && (batch->reading || batch->active > 0)) {
        batch->changed.WaitWithTimeout(&batch->mutex, absl::Milliseconds(100));
        if (!batch->gone && context->IsCancelled()) batch->gone = true;
      }
      if (batch->ready.empty()) break;  // nothing left to read, run or write
      ready.swap(batch->ready);
    }
    for (const v1::Completion& completion : ready) {
      if (!batch->gone && !stream->Write(completion)) batch->gone = true;
    }
  }
  reader.join();
  absl::MutexLock lock(&batch->mutex);
  context->AddTrailingMetadata("batch-generated-tokens",
                               absl::StrCat(batch->meter.generated_tokens()));
  context->AddTrailingMetadata("batch-tokens-per-second",
                               absl::StrCat(batch->meter.TokensPerSecond()));
  return grpc::Status::OK;
}

grpc::Status RackServiceImpl::Cancel(grpc::ServerContext* /*context*/,
                                     const v1::CancelRequest* request,
                                     v1::CancelResponse* /*response*/) {
  if (request->request_id().empty()) {
    return wire::ToGrpcStatus(absl::InvalidArgumentError("request_id: empty"));
  }
  std::shared_ptr<InFlight> flight;
  {
    absl::MutexLock lock(&mutex_);
    auto it = in_flight_.find(request->request_id());
    if (it == in_flight_.end()) {
      return wire::ToGrpcStatus(absl::NotFoundError(
          absl::StrCat("request_id: no request \"", request->request_id(), "\" in flight")));
    }
    flight = it->second;
  }
  {
    absl::MutexLock lock(&flight->mutex);
    flight->cancelled = true;
    if (flight->upstream != nullptr) flight->upstream->TryCancel();
  }
  rack_.dispatcher->Wake();
  return grpc::Status::OK;
}

namespace {

void Summarize(const LatencyHistogram& histogram, v1::LatencySummary* out) {
  out->set_count(histogram.count());
  out->set_mean_seconds(histogram.count() > 0 ? histogram.sum() / histogram.count() : 0);
  out->set_p50_seconds(histogram.Quantile(0.5));
  out->set_p90_seconds(histogram.Quantile(0.9));
  out->set_p99_seconds(histogram.Quantile(0.99));
}

}  // namespace

void RackServiceImpl::FillStats(v1::RackStats* stats) const {
  const absl::Time now = rack_.clock->Now();
  const ThroughputSnapshot snap = rack_.throughput->Snapshot(now);
  FillThroughput(snap.rack, stats->mutable_rack());
  stats->mutable_rack()->set_generated_tokens_total(snap.delivered_generated_total);
  // VMs and replicas in topology order, each with its load and state, reported or not yet.
  auto throughput_of = [](const std::vector<ScopeThroughput>& scopes, const std::string& name,
                          v1::Throughput* out) {
    auto it = std::find_if(scopes.begin(), scopes.end(),
                           [&](const ScopeThroughput& scope) { return scope.name == name; });
    FillThroughput(it != scopes.end() ? *it : NothingReported(name), out);
  };
  for (const VmSpec& vm : rack_.topology->vms()) {
    v1::ScopeStats* s = stats->add_vms();
    s->set_name(vm.name);
    throughput_of(snap.vms, vm.name, s->mutable_throughput());
    FillLoad(rack_.registry->VmLoad(vm.name), s);
    std::string address;
    s->set_state(StateName(rack_.registry->VmState(vm.name, &address)));
  }
  for (const ReplicaStatus& replica : rack_.registry->Replicas()) {
    v1::ScopeStats* s = stats->add_replicas();
    s->set_name(replica.id);
    throughput_of(snap.replicas, replica.id, s->mutable_throughput());
    FillLoad(replica.load, s);
    s->set_state(ReplicaStateName(replica));
  }
  for (const ScopeThroughput& device : snap.devices) {
    v1::ScopeStats* s = stats->add_devices();
    s->set_name(device.name);
    FillThroughput(device, s->mutable_throughput());
  }
  stats->set_worker_generated_tokens_total(snap.worker_generated_tokens_total);
  v1::Audit* audit = stats->mutable_audit();
  audit->set_delivered_tokens(snap.audit.delivered);
  audit->set_worker_reported_tokens(snap.audit.reported);
  audit->set_received_tokens(snap.audit.received);
  audit->set_discarded_tokens(snap.audit.discarded);
  audit->set_unreported_tokens(snap.audit.unreported);
  audit->set_exact(snap.audit.exact);
  if (rack_.latency != nullptr) {
    Summarize(rack_.latency->Ttft(), stats->mutable_ttft());
    Summarize(rack_.latency->Tpot(), stats->mutable_tpot());
  }
  stats->set_requests_queued(rack_.dispatcher->queued());
  stats->set_uptime_seconds(absl::ToDoubleSeconds(now - started_));
  absl::MutexLock lock(&mutex_);
  stats->set_requests_in_flight(static_cast<int64_t>(in_flight_.size()));
  stats->set_requests_completed(completed_);
}

void RackServiceImpl::FillTopology(v1::Topology* out) const {
  const Topology& topology = *rack_.topology;
  out->set_model(topology.model());
  for (const VmSpec& vm : topology.vms()) {
    v1::Vm* v = out->add_vms();
    v->set_name(vm.name);
    std::string address;
    v->set_state(StateName(rack_.registry->VmState(vm.name, &address)));
    v->set_address(address);
    for (int d = 0; d < vm.devices; ++d) v->add_devices()->set_index(d);
  }
  const std::vector<ReplicaStatus> status = rack_.registry->Replicas();
  for (size_t i = 0; i < topology.replicas().size(); ++i) {
    const ReplicaSpec& spec = topology.replicas()[i];
    v1::Replica* r = out->add_replicas();
    r->set_id(spec.id);
    r->set_tp(spec.tp);
    r->set_pp(spec.pp);
    for (const RankSpec& rank : spec.ranks) {
      v1::RankPlacement* p = r->add_ranks();
      p->set_vm(rank.vm);
      p->set_device(rank.device);
    }
    r->set_state(ReplicaStateName(status[i]));
  }
}

grpc::Status RackServiceImpl::GetStats(grpc::ServerContext* /*context*/,
                                       const v1::StatsRequest* /*request*/,
                                       v1::RackStats* response) {
  FillStats(response);
  return grpc::Status::OK;
}

grpc::Status RackServiceImpl::WatchStats(grpc::ServerContext* context,
                                         const v1::WatchStatsRequest* request,
                                         grpc::ServerWriter<v1::RackStats>* writer) {
  if (request->interval_seconds() < 0) {
    return wire::ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("interval_seconds: ", request->interval_seconds(), " < 0")));
  }
  const absl::Duration interval =
      request->interval_seconds() == 0
          ? absl::Seconds(1)
          : std::max(absl::Seconds(request->interval_seconds()), absl::Milliseconds(50));
  while (!stopping_ && !context->IsCancelled()) {
    v1::RackStats stats;
    FillStats(&stats);
    if (!writer->Write(stats)) break;
    const absl::Time next = absl::Now() + interval;
    while (absl::Now() < next && !stopping_ && !context->IsCancelled()) {
      absl::SleepFor(std::min(interval, absl::Milliseconds(50)));
    }
  }
  return grpc::Status::OK;
}

grpc::Status RackServiceImpl::GetTopology(grpc::ServerContext* /*context*/,
                                          const v1::TopologyRequest* /*request*/,
                                          v1::Topology* response) {
  FillTopology(response);
  return grpc::Status::OK;
}

grpc::Status RackServiceImpl::DrainVm(grpc::ServerContext* /*context*/,
                                      const v1::DrainVmRequest* request,
                                      v1::DrainVmResponse* response) {
  if (request->vm().empty()) {
    return wire::ToGrpcStatus(absl::InvalidArgumentError("vm: empty"));
  }
  const absl::Status status = request->resume() ? rack_.registry->Resume(request->vm())
                                                : rack_.registry->Drain(request->vm());
  if (!status.ok()) return wire::ToGrpcStatus(status);
  rack_.dispatcher->Wake();  // resumed replicas take waiting requests
  response->set_requests_left(RequestsOnVm(request->vm()));
  std::string address;
  response->set_state(StateName(rack_.registry->VmState(request->vm(), &address)));
  return grpc::Status::OK;
}

}  // namespace rackserve::coordinator
