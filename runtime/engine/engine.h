// Engine: serves generation requests on one model replica — continuous batching over a paged KV
// cache, one ModelRunner forward per step, sampling and stop conditions.
//
// Usage: Submit() requests, call Step() while has_work(); each Step() returns the tokens it
// produced (and the final event of each request that ended). Every submitted request ends with
// exactly one event whose `finish` is not kNone: after its last token, or on Cancel().
// A request with hold_after_first gets only two events: its first token's, then its final event,
// which brings every token generated in between (TokenEvent::held_tokens) — no per-token event,
// and no per-token work for the caller, for clients that take the output at the end.
// Thread-safety: none; one thread drives an Engine (the worker wraps it with its own queue).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "runtime/base/thread_pool.h"
#include "runtime/comm/communicator.h"
#include "runtime/engine/cpu_shard_executor.h"
#include "runtime/engine/model_runner.h"
#include "runtime/kv/block_allocator.h"
#include "runtime/kv/kv_cache_config.h"
#include "runtime/numerics/fp4_matrix.h"
#include "runtime/parallel/world_config.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/stop_condition.h"
#include "runtime/scheduler/scheduler.h"

namespace rackserve::engine {

using RequestId = scheduler::RequestId;

struct EngineOptions {
  std::string backend = "cpu";  // "cpu" (the only backend built into this engine so far)
  int num_threads = 0;          // CPU threads for the ops; 0 = all cores
  int kv_block_size = 16;       // tokens per KV block
  int64_t kv_cache_bytes = int64_t{512} << 20;  // KV cache memory; sets the number of blocks
  int64_t kv_num_blocks = 0;  // explicit number of KV blocks (overrides kv_cache_bytes)
  scheduler::SchedulerOptions scheduler;
  // Format bf16/fp16/fp32 checkpoints are quantized to at load (NVFP4 checkpoints load as is).
  numerics::Fp4Format quantize_format = numerics::Fp4Format::kNvfp4;
};

struct Request {
  RequestId id = 0;
  std::vector<int32_t> prompt;  // token ids, non-empty, inside the vocabulary
  sampling::SamplingParams sampling;
  bool return_logits = false;  // attach each token's logits to its event
  // Generated tokens this request already has elsewhere (failover): they end `prompt`, sampling
  // draws and TokenEvent.index count from it, and sampling.max_new_tokens counts them too, so
  // the continuation equals an uninterrupted run. In [0, sampling.max_new_tokens).
  int64_t step_offset = 0;
  // Opaque to the engine: every TokenEvent of the request carries it (the caller's handle on its
  // own per-request state, reached without a lookup per token).
  uint64_t caller_tag = 0;
  // Emit the first generated token's event, then none until the final event, which carries the
  // tokens in between (see the top). Not with return_logits.
  bool hold_after_first = false;
};

struct TokenEvent {
  RequestId id = 0;
  uint64_t caller_tag = 0;  // the request's Request::caller_tag
  int32_t token = -1;  // the generated token; -1 for an event that only ends the request
  int64_t index = -1;  // index of the token among the request's generated tokens
  sampling::FinishReason finish = sampling::FinishReason::kNone;
  std::vector<float> logits;  // [vocab], when the request asked for them
  // The final event of a hold_after_first request only: the tokens generated after its first and
  // before `token` (all of them when `token` is -1), in order.
  std::vector<int32_t> held_tokens;
};

struct StepStats {
  int64_t prefill_tokens = 0;  // prompt (and recomputed) tokens run this step
  int64_t decode_tokens = 0;   // single-token decode rows run this step
  int64_t generated_tokens = 0;
  int64_t num_sequences = 0;  // sequences in the batch
  int64_t preempted = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  double seconds = 0;  // wall time of the step
};

// The KV cache configuration `options` ask for on `config`: kv_num_blocks blocks, or as many as
// kv_cache_bytes holds for the whole model's KV (so every rank of a replica agrees).
// INVALID_ARGUMENT naming the option when no block fits or the block size is invalid.
absl::StatusOr<kv::KvCacheConfig> KvCacheConfigFor(const model::ModelConfig& config,
                                                   const EngineOptions& options);

// The shard of `model_dir` that rank world.rank of a replica holds (stage layers from
// `stage_layers`, or an even split), loaded into a CPU executor whose KV cache is sized by
// KvCacheConfigFor. `pool` and `tp` (the stage's TP group; null when world.tp == 1) must outlive
// the executor. Errors: those of model loading and shard planning, naming file, tensor or field.
struct LoadedShard {
  std::unique_ptr<CpuShardExecutor> executor;
  kv::KvCacheConfig kv;
};
absl::StatusOr<LoadedShard> LoadCpuShard(const std::string& model_dir,
                                         const parallel::WorldConfig& world,
                                         std::span<const int64_t> stage_layers,
                                         const EngineOptions& options, base::ThreadPool* pool,
                                         comm::Communicator* tp);

class Engine {
 public:
  // Loads the model directory and builds the backend named in options.
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const std::string& model_dir,
                                                      const EngineOptions& options);
  // An engine over an existing runner whose KV cache has kv.num_blocks blocks.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<ModelRunner> runner,
                                                        const kv::KvCacheConfig& kv,
                                                        const EngineOptions& options,
                                                        std::unique_ptr<base::ThreadPool> pool);
  ~Engine();

  // Validates and queues a request. INVALID_ARGUMENT naming the field (empty prompt, token outside
  // the vocabulary, prompt not shorter than the context, bad sampling parameter, step_offset
  // outside [0, max_new_tokens), a request that cannot fit in the KV cache even alone,
  // return_logits on a runner that produces tokens or with hold_after_first);
  // ALREADY_EXISTS for an id in flight. Nothing changes
  // on error.
  absl::Status Submit(Request request);
  // Ends a request now; its final event (kCancelled) comes with the next Step(). NOT_FOUND for an
  // id not in flight.
  absl::Status Cancel(RequestId id);
  // Ends every request in flight now, as Cancel() does, and returns at once every final event no
  // Step() returned yet (earlier cancellations' too), held tokens included: for a caller giving
  // up on the engine (shutting down, or after Step() failed) without losing a generated token.
  std::vector<TokenEvent> CancelAll();
  // Runs one batch step. Errors are INTERNAL (a backend failure); the engine is then unusable.
  absl::StatusOr<std::vector<TokenEvent>> Step(StepStats* stats = nullptr);

  bool has_work() const;
  int64_t num_in_flight() const { return static_cast<int64_t>(index_of_.size()); }
  const model::ModelConfig& config() const { return runner_->config(); }
  const kv::KvCacheConfig& kv_config() const { return kv_; }

 private:
  struct InFlight {
    uint64_t caller_tag = 0;
    sampling::SamplingParams sampling;
    bool return_logits = false;
    bool hold_after_first = false;
    int64_t max_new_tokens = 0;  // tokens left to generate here, clipped to the context
    int64_t step_offset = 0;     // Request::step_offset
  };
  Engine(std::unique_ptr<ModelRunner> runner, const kv::KvCacheConfig& kv,
         const EngineOptions& options, std::unique_ptr<base::ThreadPool> pool);
  absl::Status ValidateRequest(const Request& request) const;
  // INTERNAL unless a token-producing runner returned one in-vocabulary token per sampling chunk.
  absl::Status CheckRunnerTokens(std::span<const int32_t> tokens, int64_t num_sampling) const;
  // Forgets the request `id` kept at in_flight_[index]; the index is reused.
  void Release(RequestId id, uint32_t index);
  // seq's generated tokens after the first, up to (not including) position `end` of seq.tokens.
  static std::vector<int32_t> HeldTokens(const scheduler::Sequence& seq, int64_t end);

  std::unique_ptr<base::ThreadPool> pool_;  // before runner_: the runner may use it
  std::unique_ptr<ModelRunner> runner_;
  kv::KvCacheConfig kv_;
  kv::BlockAllocator allocator_;
  scheduler::Scheduler scheduler_;
  // Requests in flight at stable indices (their Sequence's owner_index, so a step reaches each
  // chunk's request without a hash lookup), reused once a request ends.
  std::vector<InFlight> in_flight_;
  std::vector<uint32_t> free_indices_;
  absl::flat_hash_map<RequestId, uint32_t> index_of_;
  std::vector<TokenEvent> pending_;  // final events of cancelled requests, sent by the next Step
};

}  // namespace rackserve::engine
