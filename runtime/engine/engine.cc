#include "runtime/engine/engine.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/engine/cpu_model_runner.h"
#include "runtime/model/model_config.h"
#include "runtime/parallel/llama_shard.h"
#include "runtime/parallel/shard_plan.h"
#include "runtime/sampling/sampler.h"

namespace rackserve::engine {

absl::StatusOr<kv::KvCacheConfig> KvCacheConfigFor(const model::ModelConfig& config,
                                                   const EngineOptions& options) {
  int64_t num_blocks = options.kv_num_blocks;
  if (num_blocks <= 0) {
    const int64_t block_bytes = CpuShardExecutor::KvBytesPerToken(config) * options.kv_block_size;
    num_blocks = block_bytes > 0 ? options.kv_cache_bytes / block_bytes : 0;
    if (num_blocks <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes ", options.kv_cache_bytes,
                                                     " holds no KV block of ", block_bytes,
                                                     " bytes"));
    }
  }
  return kv::KvCacheConfig::Create(options.kv_block_size, num_blocks);
}

absl::StatusOr<LoadedShard> LoadCpuShard(const std::string& model_dir,
                                         const parallel::WorldConfig& world,
                                         std::span<const int64_t> stage_layers,
                                         const EngineOptions& options, base::ThreadPool* pool,
                                         comm::Communicator* tp) {
  if (options.backend != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend '", options.backend, "' is not available in this build (available: cpu)"));
  }
  RS_ASSIGN_OR_RETURN(model::ModelConfig config,
                      model::ModelConfig::FromFile(model_dir + "/config.json"));
  RS_ASSIGN_OR_RETURN(parallel::ShardPlan plan,
                      parallel::PlanShard(config, world, stage_layers,
                                          numerics::Fp4BlockSize(options.quantize_format)));
  model::LoadOptions load;
  load.quantize_format = options.quantize_format;
  load.pool = pool;
  RS_ASSIGN_OR_RETURN(parallel::LlamaShard shard, parallel::LoadLlamaShard(model_dir, plan, load));
  LoadedShard loaded;
  RS_ASSIGN_OR_RETURN(loaded.kv, KvCacheConfigFor(config, options));
  RS_ASSIGN_OR_RETURN(
      loaded.executor,
      CpuShardExecutor::Create(std::make_shared<const parallel::LlamaShard>(std::move(shard)),
                               loaded.kv, pool, tp));
  return loaded;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& model_dir,
                                                     const EngineOptions& options) {
  RS_ASSIGN_OR_RETURN(parallel::WorldConfig world, parallel::WorldConfig::Create(1, 1, 0));
  auto pool = std::make_unique<base::ThreadPool>(options.num_threads);
  RS_ASSIGN_OR_RETURN(LoadedShard shard,
                      LoadCpuShard(model_dir, world, {}, options, pool.get(), nullptr));
  return Create(std::make_unique<CpuModelRunner>(std::move(shard.executor)), shard.kv, options,
                std::move(pool));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<ModelRunner> runner,
                                                       const kv::KvCacheConfig& kv,
                                                       const EngineOptions& options,
                                                       std::unique_ptr<base::ThreadPool> pool) {
  if (runner == nullptr) return absl::InvalidArgumentError("Engine: runner is null");
  RS_RETURN_IF_ERROR(scheduler::ValidateSchedulerOptions(options.scheduler));
  return std::unique_ptr<Engine>(new Engine(std::move(runner), kv, options, std::move(pool)));
}

Engine::Engine(std::unique_ptr<ModelRunner> runner, const kv::KvCacheConfig& kv,
               const EngineOptions& options, std::unique_ptr<base::ThreadPool> pool)
    : pool_(std::move(pool)),
      runner_(std::move(runner)),
      kv_(kv),
      allocator_(kv.num_blocks),
      scheduler_(options.scheduler, kv_, &allocator_) {}

Engine::~Engine() = default;

absl::Status Engine::ValidateRequest(const Request& request) const {
  const model::ModelConfig& c = config();
  if (request.prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": prompt is empty"));
  }
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    const int32_t t = request.prompt[i];
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": prompt[", i,
                                                     "] = ", t, " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
  }
  const int64_t len = static_cast<int64_t>(request.prompt.size());
  if (len >= c.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", request.id, ": prompt has ", len, " tokens; the context holds ",
                     c.max_position_embeddings, " (prompt and at least one generated token)"));
  }
  absl::Status s = sampling::ValidateSamplingParams(request.sampling, c.vocab_size);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("request ", request.id, ": ", s.message()));
  }
  if (request.return_logits && runner_->ProducesTokens()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", request.id, ": return_logits is not available on this backend (its runner ",
        "produces tokens, not logits)"));
  }
  if (request.return_logits && request.hold_after_first) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", request.id, ": return_logits needs an event per token; it cannot be combined ",
        "with hold_after_first"));
  }
  if (request.step_offset < 0 || request.step_offset >= request.sampling.max_new_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request ", request.id, ": step_offset = ", request.step_offset, " is outside [0, ",
        "max_new_tokens = ", request.sampling.max_new_tokens, ")"));
  }
  return absl::OkStatus();
}

absl::Status Engine::Submit(Request request) {
  RS_RETURN_IF_ERROR(ValidateRequest(request));
  if (index_of_.contains(request.id)) {
    return absl::AlreadyExistsError(absl::StrCat("request ", request.id, " is already in flight"));
  }
  InFlight state;
  state.caller_tag = request.caller_tag;
  state.sampling = std::move(request.sampling);
  state.return_logits = request.return_logits;
  state.hold_after_first = request.hold_after_first;
  state.step_offset = request.step_offset;
  const int64_t len = static_cast<int64_t>(request.prompt.size());
  state.max_new_tokens = std::min(state.sampling.max_new_tokens - state.step_offset,
                                  config().max_position_embeddings - len);
  const auto index =
      static_cast<uint32_t>(free_indices_.empty() ? in_flight_.size() : free_indices_.back());
  RS_RETURN_IF_ERROR(
      scheduler_.Add(request.id, std::move(request.prompt), state.max_new_tokens, index));
  if (index == in_flight_.size()) {
    in_flight_.push_back(std::move(state));
  } else {
    free_indices_.pop_back();
    in_flight_[index] = std::move(state);
  }
  index_of_.emplace(request.id, index);
  return absl::OkStatus();
}

void Engine::Release(RequestId id, uint32_t index) {
  index_of_.erase(id);
  in_flight_[index] = InFlight();
  free_indices_.push_back(index);
}

absl::Status Engine::Cancel(RequestId id) {
  auto it = index_of_.find(id);
  if (it == index_of_.end()) {
    return absl::NotFoundError(absl::StrCat("request ", id, " is not in flight"));
  }
  const uint32_t index = it->second;
  TokenEvent event;
  event.id = id;
  event.caller_tag = in_flight_[index].caller_tag;
  const scheduler::Sequence* seq = scheduler_.Find(id);
  if (seq != nullptr && in_flight_[index].hold_after_first) {
    event.held_tokens = HeldTokens(*seq, seq->num_tokens());
  }
  RS_RETURN_IF_ERROR(scheduler_.Remove(id));
  Release(id, index);
  event.finish = sampling::FinishReason::kCancelled;
  pending_.push_back(std::move(event));
  return absl::OkStatus();
}

std::vector<TokenEvent> Engine::CancelAll() {
  std::vector<RequestId> ids;
  ids.reserve(index_of_.size());
  for (const auto& [id, index] : index_of_) ids.push_back(id);
  // Cancel fails only for an id a failed Step() left half-released: it has nothing to give back.
  for (const RequestId id : ids) Cancel(id).IgnoreError();
  std::vector<TokenEvent> events = std::move(pending_);
  pending_.clear();
  return events;
}

std::vector<int32_t> Engine::HeldTokens(const scheduler::Sequence& seq, int64_t end) {
  const int64_t begin = seq.prompt_len + 1;  // after the first generated token
  if (end <= begin) return {};
  return std::vector<int32_t>(seq.tokens.begin() + begin, seq.tokens.begin() + end);
}

absl::Status Engine::CheckRunnerTokens(std::span<const int32_t> tokens,
                                       int64_t num_sampling) const {
  if (static_cast<int64_t>(tokens.size()) != num_sampling) {
    return absl::InternalError(absl::StrCat("model runner returned ", tokens.size(), " tokens for ",
                                            num_sampling, " sampling chunks"));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config().vocab_size) {
      return absl::InternalError(absl::StrCat("model runner returned token ", tokens[i], " at row ",
                                              i, ", outside the vocabulary [0, ",
                                              config().vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

bool Engine::has_work() const { return scheduler_.has_work() || !pending_.empty(); }

absl::StatusOr<std::vector<TokenEvent>> Engine::Step(StepStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<TokenEvent> events = std::move(pending_);
  pending_.clear();
  StepStats local;
  const scheduler::StepPlan plan = scheduler_.Schedule();
  events.reserve(events.size() + plan.chunks.size());
  local.preempted = static_cast<int64_t>(plan.preempted.size());

  if (!plan.empty()) {
    std::vector<BatchChunk> chunks;
    chunks.reserve(plan.chunks.size());
    int64_t num_sampling = 0;
    for (const scheduler::ScheduledChunk& sc : plan.chunks) {
      const scheduler::Sequence& seq = *sc.seq;
      BatchChunk chunk;
      chunk.tokens = std::span<const int32_t>(seq.tokens).subspan(sc.start, sc.count);
      chunk.start = sc.start;
      chunk.block_table = seq.block_table;
      chunk.samples = sc.samples;
      chunks.push_back(chunk);
      num_sampling += sc.samples ? 1 : 0;
      const bool decode = sc.count == 1 && sc.start >= seq.prompt_len;
      (decode ? local.decode_tokens : local.prefill_tokens) += sc.count;
    }
    local.num_sequences = static_cast<int64_t>(chunks.size());
    const bool produces_tokens = runner_->ProducesTokens();
    std::vector<float> logits;
    std::vector<int32_t> tokens;
    absl::Status run = produces_tokens ? runner_->ForwardTokens(chunks, &tokens)
                                       : runner_->Forward(chunks, &logits);
    if (!run.ok()) {
      return absl::InternalError(absl::StrCat("forward pass failed: ", run.ToString()));
    }
    if (produces_tokens) RS_RETURN_IF_ERROR(CheckRunnerTokens(tokens, num_sampling));
    scheduler_.Commit(plan);

    const int64_t vocab = config().vocab_size;
    int64_t row = 0;
    // Each chunk reads its request's InFlight and appends to its sequence's tokens: both fetched
    // a few chunks ahead (Commit brought the Sequence itself), so the cache misses overlap.
    constexpr size_t kPrefetchAhead = 4;
    for (size_t c = 0; c < plan.chunks.size(); ++c) {
      if (c + kPrefetchAhead < plan.chunks.size()) {
        const scheduler::Sequence* next = plan.chunks[c + kPrefetchAhead].seq;
        __builtin_prefetch(&in_flight_[next->owner_index]);
        __builtin_prefetch(next->tokens.data() + next->tokens.size(), /*rw=*/1);
      }
      const scheduler::ScheduledChunk& sc = plan.chunks[c];
      if (!sc.samples) continue;
      const RequestId id = sc.seq->id;
      const uint32_t in_flight_index = sc.seq->owner_index;
      const InFlight& state = in_flight_[in_flight_index];
      const int64_t generated = static_cast<int64_t>(sc.seq->tokens.size()) - sc.seq->prompt_len;
      const int64_t index = state.step_offset + generated;
      TokenEvent event;
      event.id = id;
      event.caller_tag = state.caller_tag;
      event.index = index;
      if (produces_tokens) {
        event.token = tokens[row];
      } else {
        const std::span<const float> row_logits(logits.data() + row * vocab, vocab);
        event.token = sampling::SampleToken(row_logits, state.sampling, index);
        if (state.return_logits) event.logits.assign(row_logits.begin(), row_logits.end());
      }
      ++row;
      event.finish =
          sampling::CheckStop(event.token, index + 1, state.sampling, config().eos_token_ids);
      if (event.finish == sampling::FinishReason::kNone && generated + 1 >= state.max_new_tokens) {
        event.finish = sampling::FinishReason::kLength;  // the context is full
      }
      scheduler_.AppendToken(sc, event.token);
      ++local.generated_tokens;
      const bool final = event.finish != sampling::FinishReason::kNone;
      if (state.hold_after_first) {
        if (!final && generated > 0) continue;  // held: the final event brings it
        // Up to the token just appended, which is the event's own.
        if (final) event.held_tokens = HeldTokens(*sc.seq, sc.seq->num_tokens() - 1);
      }
      if (final) {
        RS_RETURN_IF_ERROR(scheduler_.Remove(id));
        Release(id, in_flight_index);  // `state` is reset: not read below
      }
      events.push_back(std::move(event));
    }
  }
  local.kv_blocks_total = allocator_.num_blocks();
  local.kv_blocks_used = allocator_.num_blocks() - allocator_.num_free();
  local.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats != nullptr) *stats = local;
  return events;
}

}  // namespace rackserve::engine
