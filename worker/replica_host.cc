#include "worker/replica_host.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/base/thread_name.h"

namespace rackserve::worker {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// INVALID_ARGUMENT naming `field`[i] for the first token outside [0, vocab_size).
absl::Status CheckTokens(const std::vector<int32_t>& tokens, std::string_view field,
                         int64_t vocab_size) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(field), "[", i, "] = ", tokens[i],
                                                     " is outside the vocabulary [0, ", vocab_size,
                                                     ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

ReplicaHost::ReplicaHost(std::string replica_id, std::unique_ptr<engine::Engine> engine)
    : replica_id_(std::move(replica_id)), engine_(std::move(engine)) {
  RS_CHECK(engine_ != nullptr);
  counters_.replica_id = replica_id_;
  counters_.kv_blocks_total = engine_->kv_config().num_blocks;
  thread_ = std::thread([this] { StepLoop(); });
}

absl::StatusOr<std::unique_ptr<ReplicaHost>> ReplicaHost::Load(
    std::string replica_id, const std::string& model_dir, const engine::EngineOptions& options) {
  RS_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine,
                      engine::Engine::Load(model_dir, options));
  return std::make_unique<ReplicaHost>(std::move(replica_id), std::move(engine));
}

ReplicaHost::~ReplicaHost() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::StatusOr<int64_t> ReplicaHost::Validate(const ReplicaRequest& r) const {
  const model::ModelConfig& config = engine_->config();
  if (r.request_id.empty()) return absl::InvalidArgumentError("request_id is empty");
  if (r.prompt.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt_token_ids of request '", r.request_id, "' is empty"));
  }
  RS_RETURN_IF_ERROR(CheckTokens(r.prompt, "prompt_token_ids", config.vocab_size));
  RS_RETURN_IF_ERROR(CheckTokens(r.resume_tokens, "resume_token_ids", config.vocab_size));
  const absl::Status sampling = sampling::ValidateSamplingParams(r.sampling, config.vocab_size);
  if (!sampling.ok()) {
    return absl::Status(sampling.code(), absl::StrCat("sampling.", sampling.message()));
  }
  const int64_t resumed = static_cast<int64_t>(r.resume_tokens.size());
  if (resumed >= r.sampling.max_new_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resume_token_ids has ", resumed,
        " tokens: nothing is left of sampling.max_new_tokens = ", r.sampling.max_new_tokens));
  }
  const int64_t len = static_cast<int64_t>(r.prompt.size()) + resumed;
  if (len >= config.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt_token_ids + resume_token_ids = ", len, " tokens; the context holds ",
                     config.max_position_embeddings, " (prompt and at least one generated token)"));
  }
  const int64_t new_tokens =
      std::min(r.sampling.max_new_tokens - resumed, config.max_position_embeddings - len);
  const kv::KvCacheConfig& kv = engine_->kv_config();
  if (kv.BlocksFor(len + new_tokens) > kv.num_blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt_token_ids + sampling.max_new_tokens = ", len + new_tokens,
                     " tokens exceeds the KV cache of replica '", replica_id_, "' (",
                     kv.capacity_tokens(), " tokens)"));
  }
  return len + new_tokens;
}

absl::StatusOr<SubmissionId> ReplicaHost::Submit(ReplicaRequest request,
                                                 std::shared_ptr<StepSink> sink, uint64_t tag) {
  RS_CHECK(sink != nullptr);
  RS_ASSIGN_OR_RETURN(const int64_t reserved_tokens, Validate(request));
  SubmissionId submission = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.ok()) {
      return absl::UnavailableError(
          absl::StrCat(failure_.message(), "; request '", request.request_id, "' not admitted"));
    }
    if (draining_ || stop_) {
      return absl::UnavailableError(absl::StrCat("replica '", replica_id_,
                                                 "' is draining: request '", request.request_id,
                                                 "' not admitted"));
    }
    submission = next_submission_;
    if (!in_flight_.try_emplace(request.request_id, InFlight{submission, reserved_tokens}).second) {
      return absl::AlreadyExistsError(absl::StrCat("request_id '", request.request_id,
                                                   "' is already in flight on replica '",
                                                   replica_id_, "'"));
    }
    ++next_submission_;
    reserved_tokens_ += reserved_tokens;
    queued_.push_back(Queued{submission, std::move(request), Receiver{tag, std::move(sink)}});
  }
  cv_.notify_all();
  return submission;
}

absl::Status ReplicaHost::QueueCancel(std::string_view request_id,
                                      std::optional<SubmissionId> submission) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = in_flight_.find(std::string(request_id));
    if (it == in_flight_.end()) {
      return absl::NotFoundError(absl::StrCat("request_id '", std::string(request_id),
                                              "' is not in flight on replica '", replica_id_, "'"));
    }
    if (submission.has_value() && it->second.submission != *submission) {
      return absl::NotFoundError(absl::StrCat("submission ", *submission, " of request_id '",
                                              std::string(request_id), "' ended on replica '",
                                              replica_id_, "' (submission ", it->second.submission,
                                              " is in flight)"));
    }
    cancels_.push_back(it->second.submission);
  }
  cv_.notify_all();
  return absl::OkStatus();
}

absl::Status ReplicaHost::Cancel(std::string_view request_id) {
  return QueueCancel(request_id, std::nullopt);
}

absl::Status ReplicaHost::Cancel(std::string_view request_id, SubmissionId submission) {
  return QueueCancel(request_id, submission);
}

void ReplicaHost::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool ReplicaHost::draining() const {
  std::lock_guard<std::mutex> lock(mu_);
  return draining_;
}

absl::Status ReplicaHost::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

bool ReplicaHost::WaitIdle(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [this] { return in_flight_.empty(); });
}

int64_t ReplicaHost::requests_in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(in_flight_.size());
}

ReplicaCounters ReplicaHost::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaCounters c = counters_;
  if (idle_since_.has_value()) c.idle_seconds += SecondsSince(*idle_since_);
  c.reserved_tokens = reserved_tokens_;
  c.waiting = std::max<int64_t>(static_cast<int64_t>(in_flight_.size()) - c.running, 0);
  const kv::KvCacheConfig& kv = engine_->kv_config();
  if (failure_.ok() && !draining_ && !stop_) {
    const int64_t free_tokens = (c.kv_blocks_total - c.kv_blocks_used) * kv.block_size;
    c.free_token_credit =
        std::max<int64_t>(std::min(free_tokens, kv.capacity_tokens() - reserved_tokens_), 0);
  } else {
    c.free_token_credit = 0;
  }
  return c;
}

void ReplicaHost::StepLoop() {
  base::NameThisThread(absl::StrCat("step ", replica_id_));
  absl::Status failure;  // a copy of failure_ for the step thread
  while (true) {
    std::deque<Queued> queued;
    std::vector<SubmissionId> cancels;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto ready = [&] {
        return stop_ || !queued_.empty() || !cancels_.empty() ||
               (failure.ok() && engine_->has_work());
      };
      if (!ready()) {
        idle_since_ = std::chrono::steady_clock::now();
        cv_.wait(lock, ready);
        counters_.idle_seconds += SecondsSince(*idle_since_);
        idle_since_.reset();
      }
      if (stop_) break;
      queued.swap(queued_);
      cancels.swap(cancels_);
    }
    if (!failure.ok()) {  // requests queued while the engine was failing
      Reject(std::move(queued), failure);
      continue;
    }
    Admit(std::move(queued), std::move(cancels));
    if (!engine_->has_work()) continue;
    const absl::Status step = RunStep();
    if (!step.ok()) {
      failure = absl::UnavailableError(absl::StrCat(
          "replica '", replica_id_, "' failed and serves no more requests: ", step.ToString()));
      {
        std::lock_guard<std::mutex> lock(mu_);
        failure_ = failure;
        counters_.running = 0;
      }
      FailAll(failure);
    }
  }
  // Shutdown: queued requests never reached the engine; active ones are cut off.
  std::deque<Queued> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queued_);
  }
  const absl::Status shutdown =
      absl::UnavailableError(absl::StrCat("replica '", replica_id_, "' shut down"));
  Reject(std::move(queued), shutdown);
  FailAll(shutdown);
}

void ReplicaHost::Reject(std::deque<Queued> queued, const absl::Status& status) {
  for (Queued& q : queued) {
    ChunkView view;
    view.tag = q.receiver.tag;
    view.first_index = static_cast<int64_t>(q.request.resume_tokens.size());
    view.finish = sampling::FinishReason::kCancelled;
    view.status = status;
    Finish(q.request.request_id);
    HandOne(q.receiver, view);
  }
}

void ReplicaHost::Admit(std::deque<Queued> queued, std::vector<SubmissionId> cancels) {
  for (Queued& q : queued) {
    const int64_t resumed = static_cast<int64_t>(q.request.resume_tokens.size());
    engine::Request request;
    request.id = q.submission;
    request.prompt = q.request.prompt;
    request.prompt.insert(request.prompt.end(), q.request.resume_tokens.begin(),
                          q.request.resume_tokens.end());
    request.sampling = q.request.sampling;
    request.step_offset = resumed;
    request.hold_after_first = q.request.deliver_at_end;
    const auto [it, inserted] = active_.try_emplace(q.submission);
    RS_CHECK(inserted);  // submission ids are never reused
    Active& active = it->second;
    request.caller_tag = reinterpret_cast<uintptr_t>(&active);
    const int64_t prompt_tokens = static_cast<int64_t>(q.request.prompt.size());
    const absl::Status s = engine_->Submit(std::move(request));
    if (!s.ok()) {
      active_.erase(it);
      // Validate() mirrors the engine's checks, so this is a rare disagreement: report it.
      std::deque<Queued> rejected;
      rejected.push_back(std::move(q));
      Reject(std::move(rejected), s);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters_.prompt_tokens += prompt_tokens;
    }
    active.next_index = resumed;
    active.prompt_tokens = prompt_tokens;
    active.receiver = std::move(q.receiver);
    active.request_id = q.request.request_id;
  }
  for (const SubmissionId submission : cancels) {
    auto it = active_.find(submission);
    // Not found or cancelled already: it ended (or was cancelled) since Cancel() was called. A
    // cancelled entry stays until the engine's final event.
    if (it == active_.end() || it->second.cancelled) continue;
    const absl::Status cancelled = engine_->Cancel(submission);
    RS_CHECK(cancelled.ok());
    it->second.cancelled = true;
  }
}

absl::Status ReplicaHost::RunStep() {
  engine::StepStats stats;
  absl::StatusOr<std::vector<engine::TokenEvent>> events = engine_->Step(&stats);
  if (!events.ok()) return events.status();
  // One chunk per request: the engine emits a request's events of a step consecutively, in index
  // order (at most a token and its end; a deliver_at_end request's end brings its held tokens).
  outgoing_.clear();
  tokens_.clear();
  for (const engine::TokenEvent& e : *events) {
    if (outgoing_.empty() || outgoing_.back().id != e.id) {
      auto* active = reinterpret_cast<Active*>(static_cast<uintptr_t>(e.caller_tag));
      outgoing_.push_back(Outgoing{e.id, active, tokens_.size(), tokens_.size()});
    }
    Outgoing& out = outgoing_.back();
    tokens_.insert(tokens_.end(), e.held_tokens.begin(), e.held_tokens.end());
    if (e.token >= 0) tokens_.push_back(e.token);
    out.end = tokens_.size();
    if (e.finish != sampling::FinishReason::kNone) out.finish = e.finish;
  }
  int64_t finished_in_batch = 0;  // requests of this step's batch that ended with a token
  bool any_final = false;
  for (const Outgoing& out : outgoing_) {
    if (out.finish == sampling::FinishReason::kNone) continue;
    any_final = true;
    if (out.end > out.begin) ++finished_in_batch;
  }
  // The chunks to hand over; a deliver_at_end request's tokens are counted when handed over.
  num_batches_ = 0;
  int64_t handed = 0;
  for (const Outgoing& out : outgoing_) {
    Active& active = *out.active;
    const bool final = out.finish != sampling::FinishReason::kNone;
    const std::span<const int32_t> tokens =
        std::span<const int32_t>(tokens_).subspan(out.begin, out.end - out.begin);
    ChunkView view;
    view.tag = active.receiver.tag;
    view.token_ids = tokens;
    view.first_index = active.next_index;
    view.finish = out.finish;
    if (final) view.prompt_tokens = active.prompt_tokens;
    active.next_index += static_cast<int64_t>(tokens.size());
    handed += static_cast<int64_t>(tokens.size());
    BatchFor(active.receiver.sink.get()).views.push_back(std::move(view));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.generated_tokens += handed;
    if (stats.num_sequences > 0) ++counters_.steps;
    counters_.running = std::max<int64_t>(stats.num_sequences - finished_in_batch, 0);
    counters_.kv_blocks_used = stats.kv_blocks_used;
    counters_.kv_blocks_total = stats.kv_blocks_total;
    counters_.busy_seconds += stats.seconds;
    // Every request ending this step leaves the in-flight set before the step's chunks go out.
    for (const Outgoing& out : outgoing_) {
      if (out.finish != sampling::FinishReason::kNone) FinishLocked(out.active->request_id);
    }
  }
  if (any_final) cv_.notify_all();
  for (size_t i = 0; i < num_batches_; ++i) batches_[i].sink->DeliverStep(batches_[i].views);
  // Last: the finished requests' receivers kept their StepSinks alive through the delivery.
  for (const Outgoing& out : outgoing_) {
    if (out.finish != sampling::FinishReason::kNone) active_.erase(out.id);
  }
  return absl::OkStatus();
}

ReplicaHost::SinkBatch& ReplicaHost::BatchFor(StepSink* sink) {
  // Linear: a host serves a handful of sinks (one per Serve stream).
  for (size_t i = 0; i < num_batches_; ++i) {
    if (batches_[i].sink == sink) return batches_[i];
  }
  if (num_batches_ == batches_.size()) batches_.emplace_back();
  SinkBatch& batch = batches_[num_batches_++];
  batch.sink = sink;
  batch.views.clear();
  return batch;
}

void ReplicaHost::HandOne(const Receiver& receiver, const ChunkView& view) {
  receiver.sink->DeliverStep(std::span<const ChunkView>(&view, 1));
}

void ReplicaHost::FailAll(const absl::Status& status) {
  // Held tokens were generated: they go out with the failure.
  for (const engine::TokenEvent& e : engine_->CancelAll()) {
    auto it = active_.find(e.id);
    if (it == active_.end()) continue;
    FailOne(it->second, e.held_tokens, status);
    active_.erase(it);
  }
  // Requests a failed step left out of the engine's books.
  for (auto& [id, active] : active_) FailOne(active, {}, status);
  active_.clear();
}

void ReplicaHost::FailOne(const Active& active, std::span<const int32_t> held,
                          const absl::Status& status) {
  ChunkView view;
  view.tag = active.receiver.tag;
  view.token_ids = held;
  view.first_index = active.next_index;
  view.finish = sampling::FinishReason::kCancelled;
  view.prompt_tokens = active.prompt_tokens;
  view.status = status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.generated_tokens += static_cast<int64_t>(held.size());
  }
  Finish(active.request_id);
  HandOne(active.receiver, view);
}

void ReplicaHost::Finish(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(request_id);
  }
  cv_.notify_all();
}

void ReplicaHost::FinishLocked(const std::string& request_id) {
  auto it = in_flight_.find(request_id);
  RS_CHECK(it != in_flight_.end());
  reserved_tokens_ -= it->second.reserved_tokens;
  in_flight_.erase(it);
}

}  // namespace rackserve::worker
