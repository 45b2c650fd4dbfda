#include "coordinator/rack_service.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/admission.h"
#include "coordinator/completion_batches.h"
#include "proto/wire_conversion.h"
#include "runtime/base/status_macros.h"
#include "runtime/base/thread_name.h"

namespace rackserve::coordinator {
namespace {

constexpr absl::Duration kMonitorPeriod = absl::Milliseconds(100);
// SubmitBatchPacked starts a new CompletionBatch message beyond this size (gRPC's default
// receive limit is 4 MiB).
constexpr size_t kMaxPackedBytes = size_t{1} << 20;
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
  out->set_busy_seconds(load.busy_seconds);
  out->set_idle_seconds(load.idle_seconds);
  out->set_counters_read_at_unix_seconds(load.read_at_unix_seconds);
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
      data_path_(options_.data_path, rack),
      monitor_([this] { Monitor(); }) {}

RackServiceImpl::~RackServiceImpl() { Shutdown(); }

void RackServiceImpl::Shutdown() {
  stopping_ = true;
  if (monitor_.joinable()) monitor_.join();
  data_path_.Shutdown();
}

void RackServiceImpl::Monitor() {
  while (!stopping_) {
    for (const std::string& worker_id : rack_.registry->ExpireDead()) {
      std::fprintf(stderr, "worker %s: no heartbeat within the timeout\n", worker_id.c_str());
      OnWorkerDead(worker_id);
    }
    DropForgottenWorkers();
    absl::SleepFor(kMonitorPeriod);
  }
}

void RackServiceImpl::DropForgottenWorkers() {
  for (const ForgottenWorker& worker : rack_.registry->TakeForgotten()) {
    rack_.throughput->RetireSource(worker.worker_id);
    data_path_.DropWorker(worker.worker_id);
  }
}

void RackServiceImpl::OnWorkerDead(const std::string& worker_id) {
  data_path_.OnWorkerDead(worker_id);
}

absl::StatusOr<FlightRequest> RackServiceImpl::Prepare(const v1::GenerateRequest& request) {
  FlightRequest out;
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
  out.id = request.request_id().empty() ? absl::StrCat("rack-", next_id_++) : request.request_id();
  return out;
}

namespace {

grpc::Status WithRetryHint(grpc::ServerContext* context, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kResourceExhausted) {
    const int64_t ms = RetryAfterMillisFromMessage(std::string(status.message()));
    if (ms > 0) context->AddTrailingMetadata("retry-after-ms", absl::StrCat(ms));
  }
  return wire::ToGrpcStatus(status);
}

v1::Completion ErrorCompletion(const std::string& id, const absl::Status& status) {
  v1::Completion completion;
  completion.set_request_id(id);
  completion.set_error_code(static_cast<int32_t>(status.code()));
  completion.set_error_message(std::string(status.message()));
  return completion;
}

// Whether a call's client went away, asked of gRPC at most once per kMonitorPeriod:
// ServerContext::IsCancelled plucks the call's completion queue (a hand-off to a gRPC thread and
// back), too dear to ask after every write of a busy stream. A client that goes away is noticed
// sooner by a failing Write.
class ClientGoneCheck {
 public:
  explicit ClientGoneCheck(grpc::ServerContext* context) : context_(context) {}
  bool operator()() {
    const absl::Time now = absl::Now();
    if (now < next_) return false;
    next_ = now + kMonitorPeriod;
    return context_->IsCancelled();
  }

 private:
  grpc::ServerContext* const context_;
  absl::Time next_ = absl::InfinitePast();
};

// One Generate call's output: chunks queue up on the data path's threads; the handler writes.
class ChunkStream final : public FlightObserver {
 public:
  void OnTokens(const std::string& id, int64_t first_index,
                std::span<const int32_t> tokens) override {
    v1::TokenChunk chunk;
    chunk.set_request_id(id);
    chunk.set_first_index(first_index);
    chunk.mutable_token_ids()->Assign(tokens.begin(), tokens.end());
    absl::MutexLock lock(&mutex_);
    chunks_.push_back(std::move(chunk));
  }
  void OnEnd(v1::Completion completion) override {
    absl::MutexLock lock(&mutex_);
    if (completion.error_code() != 0) {
      error_ = absl::Status(static_cast<absl::StatusCode>(completion.error_code()),
                            completion.error_message());
    } else {
      v1::TokenChunk last;
      last.set_request_id(completion.request_id());
      last.set_first_index(completion.token_ids_size());
      last.set_finish_reason(completion.finish_reason());
      last.set_prompt_tokens(completion.prompt_tokens());
      *last.mutable_timings() = completion.timings();
      chunks_.push_back(std::move(last));
    }
    ended_ = true;
  }

  // Waits up to `timeout` for chunks; moves them into `out`. True once the flight ended and
  // every chunk was taken.
  bool Take(absl::Duration timeout, std::deque<v1::TokenChunk>* out, absl::Status* error) {
    absl::MutexLock lock(&mutex_);
    mutex_.AwaitWithTimeout(absl::Condition(
                                +[](ChunkStream* self) {
                                  self->mutex_.AssertHeld();
                                  return self->ended_ || !self->chunks_.empty();
                                },
                                this),
                            timeout);
    out->swap(chunks_);
    *error = error_;
    return ended_;
  }

 private:
  absl::Mutex mutex_;
  std::deque<v1::TokenChunk> chunks_ ABSL_GUARDED_BY(mutex_);
  bool ended_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mutex_);
};

// One SubmitBatch stream: completions (and first-token notes) queue up; the handler writes.
class BatchStream final : public FlightObserver {
 public:
  // A request of the batch is about to start. `notify_first_token`: send its first-token note.
  // False (nothing recorded) when a request of the batch with the same id still runs.
  bool Starting(const std::string& id, bool notify_first_token, absl::Time now) {
    absl::MutexLock lock(&mutex_);
    if (!running_.emplace(id, notify_first_token).second) return false;
    meter_.Issued(now);
    return true;
  }
  // It did not start after all (`status` says why).
  void NotStarted(const std::string& id, const absl::Status& status) {
    absl::MutexLock lock(&mutex_);
    running_.erase(id);
    ready_.push_back(ErrorCompletion(id, status));
  }
  // It was refused before Starting().
  void Refused(const std::string& id, const absl::Status& status) {
    absl::MutexLock lock(&mutex_);
    ready_.push_back(ErrorCompletion(id, status));
  }
  void DoneReading() {
    absl::MutexLock lock(&mutex_);
    reading_ = false;
  }

  void OnFirstToken(const std::string& id, int32_t token, double ttft_seconds) override {
    absl::MutexLock lock(&mutex_);
    auto it = running_.find(id);
    if (it == running_.end() || !it->second) return;
    v1::Completion note;
    note.set_request_id(id);
    note.add_token_ids(token);
    note.set_first_token(true);
    note.mutable_timings()->set_ttft_seconds(ttft_seconds);
    ready_.push_back(std::move(note));
  }
  void OnEnd(v1::Completion completion) override {
    absl::MutexLock lock(&mutex_);
    running_.erase(completion.request_id());
    if (completion.error_code() == 0) meter_.Completed(absl::Now(), completion.token_ids_size());
    ready_.push_back(std::move(completion));
  }

  // Waits up to `timeout` for completions; moves them into `out`. True once the reader is done,
  // no request runs and everything was taken.
  bool Take(absl::Duration timeout, std::deque<v1::Completion>* out) {
    absl::MutexLock lock(&mutex_);
    mutex_.AwaitWithTimeout(absl::Condition(
                                +[](BatchStream* self) {
                                  self->mutex_.AssertHeld();
                                  return !self->ready_.empty() ||
                                         (!self->reading_ && self->running_.empty());
                                },
                                this),
                            timeout);
    out->swap(ready_);
    return out->empty() && !reading_ && running_.empty();
  }
  std::vector<std::string> Running() {
    absl::MutexLock lock(&mutex_);
    std::vector<std::string> ids;
    for (const auto& [id, notify] : running_) ids.push_back(id);
    return ids;
  }
  BatchJobMeter Meter() {
    absl::MutexLock lock(&mutex_);
    return meter_;
  }

 private:
  absl::Mutex mutex_;
  std::deque<v1::Completion> ready_ ABSL_GUARDED_BY(mutex_);  // to write, in completion order
  absl::flat_hash_map<std::string, bool> running_ ABSL_GUARDED_BY(mutex_);  // id -> notify
  bool reading_ ABSL_GUARDED_BY(mutex_) = true;
  BatchJobMeter meter_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace

grpc::Status RackServiceImpl::Generate(grpc::ServerContext* context,
                                       const v1::GenerateRequest* request,
                                       grpc::ServerWriter<v1::TokenChunk>* writer) {
  absl::StatusOr<FlightRequest> prepared = Prepare(*request);
  if (!prepared.ok()) return wire::ToGrpcStatus(prepared.status());
  const std::string id = prepared->id;
  ChunkStream stream;
  const absl::Status started =
      data_path_.Start(*std::move(prepared), &stream, [context] { return context->IsCancelled(); });
  if (!started.ok()) return WithRetryHint(context, started);
  // The only thread that writes to the call and asks whether its client is gone.
  ClientGoneCheck client_gone(context);
  bool gone = false;
  while (true) {
    std::deque<v1::TokenChunk> chunks;
    absl::Status error;
    const bool ended = stream.Take(kMonitorPeriod, &chunks, &error);
    for (const v1::TokenChunk& chunk : chunks) {
      if (!gone && !writer->Write(chunk)) gone = true;
    }
    if (ended) {
      if (gone) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      return WithRetryHint(context, error);
    }
    if (!gone && client_gone()) gone = true;
    if (gone) data_path_.Cancel(id).IgnoreError();  // NOT_FOUND: it is ending anyway
  }
}

grpc::Status RackServiceImpl::SubmitBatch(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::Completion, v1::GenerateRequest>* stream) {
  return RunBatch(
      context,
      [stream](std::vector<v1::GenerateRequest>* requests) {
        requests->resize(1);
        return stream->Read(&requests->front());
      },
      [stream](std::deque<v1::Completion> ready) {
        for (const v1::Completion& completion : ready) {
          if (!stream->Write(completion)) return false;
        }
        return true;
      });
}

grpc::Status RackServiceImpl::SubmitBatchPacked(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::CompletionBatch, v1::GenerateRequestBatch>* stream) {
  return RunBatch(
      context,
      [stream](std::vector<v1::GenerateRequest>* requests) {
        v1::GenerateRequestBatch batch;
        if (!stream->Read(&batch)) return false;
        requests->assign(std::make_move_iterator(batch.mutable_requests()->begin()),
                         std::make_move_iterator(batch.mutable_requests()->end()));
        return true;
      },
      [stream](std::deque<v1::Completion> ready) {
        for (const v1::CompletionBatch& batch :
             PackCompletions(std::move(ready), kMaxPackedBytes)) {
          if (!stream->Write(batch)) return false;
        }
        return true;
      });
}

grpc::Status RackServiceImpl::RunBatch(
    grpc::ServerContext* context, absl::FunctionRef<bool(std::vector<v1::GenerateRequest>*)> read,
    absl::FunctionRef<bool(std::deque<v1::Completion>)> write) {
  // One thread reads the requests and starts them (blocking while the rack has no credit); the
  // data path's threads queue completions; only this handler thread writes them and asks the
  // call whether its client is gone (ServerContext::IsCancelled plucks the call's completion
  // queue, which takes a handful of concurrent pluckers — more broke the stream's own
  // Read/Write). When the client goes away, the batch's requests are cancelled.
  BatchStream batch;
  std::atomic<bool> gone{false};
  int64_t count = 0;
  auto start = [&](const v1::GenerateRequest& request) {
    if (++count > options_.max_batch_requests) {
      batch.Refused(request.request_id(), absl::InvalidArgumentError(absl::StrCat(
                                              "batch: more than ", options_.max_batch_requests,
                                              " requests in one SubmitBatch stream")));
      return;
    }
    absl::StatusOr<FlightRequest> prepared = Prepare(request);
    if (!prepared.ok()) {
      batch.Refused(request.request_id(), prepared.status());
      return;
    }
    const std::string id = prepared->id;
    prepared->stream_tokens = false;  // a batch answers with completions
    if (!batch.Starting(id, request.notify_first_token(), rack_.clock->Now())) {
      batch.Refused(id, absl::InvalidArgumentError(
                            absl::StrCat("request_id: \"", id, "\" is already in flight")));
      return;
    }
    const absl::Status started =
        data_path_.Start(*std::move(prepared), &batch, [&gone] { return gone.load(); });
    if (!started.ok()) batch.NotStarted(id, started);
  };
  std::thread reader([&] {
    base::NameThisThread("batch-read");
    std::vector<v1::GenerateRequest> requests;
    while (!gone && read(&requests)) {
      for (const v1::GenerateRequest& request : requests) {
        if (gone) break;
        start(request);
      }
    }
    batch.DoneReading();
  });

  ClientGoneCheck client_gone(context);
  while (true) {
    std::deque<v1::Completion> ready;
    const bool done = batch.Take(kMonitorPeriod, &ready);
    if (!gone && !ready.empty() && !write(std::move(ready))) gone = true;
    if (done) break;
    if (!gone && client_gone()) gone = true;
    if (gone) {
      for (const std::string& id : batch.Running()) data_path_.Cancel(id).IgnoreError();
    }
  }
  reader.join();
  const BatchJobMeter meter = batch.Meter();
  context->AddTrailingMetadata("batch-generated-tokens", absl::StrCat(meter.generated_tokens()));
  context->AddTrailingMetadata("batch-tokens-per-second", absl::StrCat(meter.TokensPerSecond()));
  return grpc::Status::OK;
}

grpc::Status RackServiceImpl::Cancel(grpc::ServerContext* /*context*/,
                                     const v1::CancelRequest* request,
                                     v1::CancelResponse* /*response*/) {
  if (request->request_id().empty()) {
    return wire::ToGrpcStatus(absl::InvalidArgumentError("request_id: empty"));
  }
  return wire::ToGrpcStatus(data_path_.Cancel(request->request_id()));
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
  stats->mutable_rack()->set_generated_tokens_total(snap.audit.delivered);
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
  stats->set_worker_generated_tokens_total(snap.audit.reported);
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
  stats->set_requests_in_flight(data_path_.in_flight());
  stats->set_requests_completed(data_path_.completed());
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
  response->set_requests_left(data_path_.RequestsOnVm(request->vm()));
  std::string address;
  response->set_state(StateName(rack_.registry->VmState(request->vm(), &address)));
  return grpc::Status::OK;
}

}  // namespace rackserve::coordinator
