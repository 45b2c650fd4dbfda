#include "coordinator/rack_service.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/admission.h"
#include "coordinator/token_ledger.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/wire_conversion.h"
#include "rackserve/v1/worker.grpc.pb.h"
#include "runtime/base/status_macros.h"

namespace rackserve::coordinator {
namespace {

constexpr absl::Duration kMonitorPeriod = absl::Milliseconds(100);

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

// One request while the coordinator runs it: what Cancel and failover act on.
struct RackServiceImpl::InFlight {
  absl::Mutex mutex;
  bool cancelled ABSL_GUARDED_BY(mutex) = false;
  bool failover ABSL_GUARDED_BY(mutex) = false;  // its worker died: re-submit elsewhere
  std::string replica_id ABSL_GUARDED_BY(mutex);
  grpc::ClientContext* upstream ABSL_GUARDED_BY(mutex) = nullptr;  // the current Submit call
};

// A validated request.
struct RackServiceImpl::Prepared {
  std::string id;
  std::vector<int32_t> prompt;
  sampling::SamplingParams params;
  absl::Time arrival;
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
    absl::SleepFor(kMonitorPeriod);
  }
}

void RackServiceImpl::OnWorkerDead(const std::string& worker_id) {
  const std::string vm = rack_.registry->VmOf(worker_id);
  if (vm.empty()) return;
  const std::optional<std::string> current = rack_.registry->WorkerOf(vm);
  if (current.has_value() && *current != worker_id) return;  // the VM has a new worker
  rack_.registry->MarkDead(worker_id);
  {
    absl::MutexLock lock(&mutex_);
    for (auto& [id, flight] : in_flight_) {
      absl::MutexLock flight_lock(&flight->mutex);
      const ReplicaSpec* replica = rack_.topology->FindReplica(flight->replica_id);
      if (replica == nullptr || flight->upstream == nullptr) continue;
      const bool on_vm = std::any_of(replica->ranks.begin(), replica->ranks.end(),
                                     [&](const RankSpec& r) { return r.vm == vm; });
      if (!on_vm) continue;
      flight->failover = true;
      flight->upstream->TryCancel();
    }
  }
  rack_.dispatcher->Wake();
}

absl::StatusOr<RackServiceImpl::Prepared> RackServiceImpl::Prepare(
    const v1::GenerateRequest& request) {
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
  const int64_t total = static_cast<int64_t>(out.prompt.size()) + out.params.max_new_tokens;
  if (total > options_.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.max_new_tokens: prompt (", out.prompt.size(), ") + max_new_tokens (",
                     out.params.max_new_tokens, ") = ", total, " exceeds the context (",
                     options_.max_context, ")"));
  }
  out.flight = std::make_shared<InFlight>();
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
    channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }
  return channel;
}

double RackServiceImpl::CompletionsPerSecond() const {
  absl::MutexLock lock(&mutex_);
  return completions_.Rate(rack_.clock->Now(), absl::Seconds(10));
}

absl::Status RackServiceImpl::Run(Prepared& request, const ChunkSink& sink) {
  InFlight& flight = *request.flight;
  auto cancelled = [&flight] {
    absl::MutexLock lock(&flight.mutex);
    return flight.cancelled;
  };
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
    absl::StatusOr<Lease> lease = rack_.dispatcher->Acquire(
        request.prompt, cost, cancelled, options_.dispatch_timeout, CompletionsPerSecond());
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
      if (flight.cancelled) context.TryCancel();
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
    while (reader->Read(&chunk)) {
      const int64_t first_index = static_cast<int64_t>(ledger.delivered().size());
      absl::StatusOr<std::vector<int32_t>> fresh = ledger.Accept(
          chunk.first_index(),
          std::span<const int32_t>(chunk.token_ids().data(), chunk.token_ids().size()));
      if (!fresh.ok()) {
        chunk_error =
            absl::Status(fresh.status().code(),
                         absl::StrCat("replica ", lease->replica_id, " sent request ", request.id,
                                      " a bad chunk: ", std::string(fresh.status().message())));
        context.TryCancel();
        break;
      }
      const absl::Time now = rack_.clock->Now();
      if (!fresh->empty()) {
        rack_.throughput->RecordDelivered(now, static_cast<int64_t>(fresh->size()));
        rack_.dispatcher->Delivered(*lease, static_cast<int64_t>(fresh->size()));
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
        client_gone = true;
        context.TryCancel();
        break;
      }
      if (finish != v1::FINISH_REASON_UNSPECIFIED) break;
    }
    if (finish != v1::FINISH_REASON_UNSPECIFIED) context.TryCancel();  // do not wait for the end
    const grpc::Status status = reader->Finish();
    bool failover = false;
    {
      absl::MutexLock lock(&flight.mutex);
      flight.upstream = nullptr;
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
      if (!failover) {  // the Submit stream broke: its worker is dead
        if (std::optional<std::string> worker = rack_.registry->WorkerOf(lease->leader_vm)) {
          OnWorkerDead(*worker);
        }
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
  absl::StatusOr<Prepared> prepared = Prepare(*request);
  if (!prepared.ok()) return wire::ToGrpcStatus(prepared.status());
  const absl::Status status =
      Run(*prepared, [writer](const v1::TokenChunk& chunk) { return writer->Write(chunk); });
  Untrack(prepared->id);
  return WithRetryHint(context, status);
}

grpc::Status RackServiceImpl::SubmitBatch(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::Completion, v1::GenerateRequest>* stream) {
  // Shared with the request threads, which may outlive this frame by their last instructions.
  struct Batch {
    absl::Mutex mutex;
    int64_t active ABSL_GUARDED_BY(mutex) = 0;
    absl::CondVar slot_freed;
    BatchJobMeter meter ABSL_GUARDED_BY(mutex);
  };
  auto batch = std::make_shared<Batch>();
  auto write = [batch, stream](const v1::Completion& completion) {
    absl::MutexLock lock(&batch->mutex);
    stream->Write(completion);
  };
  auto write_error = [write](const std::string& id, const absl::Status& status) {
    v1::Completion completion;
    completion.set_request_id(id);
    completion.set_error_code(static_cast<int32_t>(status.code()));
    completion.set_error_message(std::string(status.message()));
    write(completion);
  };

  v1::GenerateRequest request;
  int64_t count = 0;
  while (stream->Read(&request)) {
    if (++count > options_.max_batch_requests) {
      write_error(request.request_id(), absl::InvalidArgumentError(absl::StrCat(
                                            "batch: more than ", options_.max_batch_requests,
                                            " requests in one SubmitBatch stream")));
      continue;
    }
    absl::StatusOr<Prepared> prepared = Prepare(request);
    if (!prepared.ok()) {
      write_error(request.request_id(), prepared.status());
      continue;
    }
    {
      absl::MutexLock lock(&batch->mutex);
      while (batch->active >= options_.batch_concurrency) batch->slot_freed.Wait(&batch->mutex);
      ++batch->active;
      batch->meter.Issued(rack_.clock->Now());
    }
    std::thread([this, batch, write, write_error, p = std::move(*prepared)]() mutable {
      v1::Completion completion;
      completion.set_request_id(p.id);
      const absl::Status status = Run(p, [&completion](const v1::TokenChunk& chunk) {
        completion.mutable_token_ids()->Add(chunk.token_ids().begin(), chunk.token_ids().end());
        if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
          completion.set_finish_reason(chunk.finish_reason());
          *completion.mutable_timings() = chunk.timings();
          completion.set_prompt_tokens(chunk.prompt_tokens());
        }
        return true;
      });
      Untrack(p.id);
      if (status.ok()) {
        write(completion);
      } else {
        write_error(p.id, status);
      }
      absl::MutexLock lock(&batch->mutex);
      batch->meter.Completed(rack_.clock->Now(), completion.token_ids_size());
      --batch->active;
      batch->slot_freed.SignalAll();
    }).detach();
  }
  absl::MutexLock lock(&batch->mutex);
  while (batch->active > 0) batch->slot_freed.Wait(&batch->mutex);
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

void RackServiceImpl::FillStats(v1::RackStats* stats) const {
  const absl::Time now = rack_.clock->Now();
  const ThroughputSnapshot snap = rack_.throughput->Snapshot(now);
  FillThroughput(snap.rack, stats->mutable_rack());
  stats->mutable_rack()->set_generated_tokens_total(snap.delivered_generated_total);
  auto scopes = [](const std::vector<ScopeThroughput>& in,
                   google::protobuf::RepeatedPtrField<v1::ScopeStats>* out) {
    for (const ScopeThroughput& scope : in) {
      v1::ScopeStats* s = out->Add();
      s->set_name(scope.name);
      FillThroughput(scope, s->mutable_throughput());
    }
  };
  scopes(snap.vms, stats->mutable_vms());
  scopes(snap.devices, stats->mutable_devices());
  scopes(snap.replicas, stats->mutable_replicas());
  stats->set_worker_generated_tokens_total(snap.worker_generated_tokens_total);
  stats->set_requests_queued(rack_.dispatcher->queued());
  stats->set_uptime_seconds(absl::ToDoubleSeconds(now - started_));
  absl::MutexLock lock(&mutex_);
  stats->set_requests_in_flight(static_cast<int64_t>(in_flight_.size()));
  stats->set_requests_completed(completed_);
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
  const Topology& topology = *rack_.topology;
  response->set_model(topology.model());
  for (const VmSpec& vm : topology.vms()) {
    v1::Vm* out = response->add_vms();
    out->set_name(vm.name);
    std::string address;
    const WorkerState state = rack_.registry->VmState(vm.name, &address);
    out->set_address(address);
    out->set_state(state == WorkerState::kReady      ? "ready"
                   : state == WorkerState::kDraining ? "draining"
                                                     : "dead");
    for (int d = 0; d < vm.devices; ++d) out->add_devices()->set_index(d);
  }
  const std::vector<ReplicaStatus> status = rack_.registry->Replicas();
  for (size_t i = 0; i < topology.replicas().size(); ++i) {
    const ReplicaSpec& spec = topology.replicas()[i];
    v1::Replica* out = response->add_replicas();
    out->set_id(spec.id);
    out->set_tp(spec.tp);
    out->set_pp(spec.pp);
    for (const RankSpec& rank : spec.ranks) {
      v1::RankPlacement* p = out->add_ranks();
      p->set_vm(rank.vm);
      p->set_device(rank.device);
    }
    out->set_state(status[i].live ? "ready" : "down");
  }
  return grpc::Status::OK;
}

}  // namespace rackserve::coordinator
