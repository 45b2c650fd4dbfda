// ReplicaHost: one model replica served on this worker — an Engine and the one step thread that
// drives it.
//
// Submit() and Cancel() may be called from any thread: they validate and queue. The step thread
// admits queued requests into the engine, runs steps, and hands each request's tokens to its sink
// as they are produced (one chunk per request per step). The sink is a StepSink (e.g. a
// ServeSession): called once per step with every chunk of that step for the requests submitted
// with it, as ChunkViews borrowing the host's step buffer (no call, vector or lock per request).
// Each view carries the tag its request was submitted with. A request's chunks reach its sink in
// index order; within one step each StepSink is called once, its views in the engine's event
// order.
// Every accepted request ends with exactly one final chunk (finish != kNone): after its last
// token, on Cancel(), or with an UNAVAILABLE status when the engine failed or the host shut down.
// A request leaves the in-flight set just before its final chunk is handed over, so the sink may
// resubmit the same request_id.
// A deliver_at_end request (its client does not stream tokens) gets at most two chunks: its
// first step's tokens at once (the first-token time stays exact), then every later token in its
// final chunk — also when it is cancelled or fails, so no generated token is lost. The engine
// holds them (engine::Request::hold_after_first): no per-token work here.
// Each Submit() returns a SubmissionId: a cancel that names it never reaches a later submission
// of the same request_id (the coordinator resubmits an id after failover).
//
// A failed engine (a step returned an error) fails every request in flight, advertises no more
// credit, and refuses every later Submit() with UNAVAILABLE naming the replica and the failure.
//
// Credit: free_token_credit is the KV the coordinator may still promise to new requests: the
// tokens neither used nor reserved by requests in flight (each reserves prompt + resumed +
// remaining new tokens, the most it can occupy), 0 once the engine failed or the host drains.
//
// Replicas are TP1 PP1 for now: one engine rank on one (emulated) device of this worker.
// Multi-rank replicas (TP/PP through the Communicator, possibly spanning workers) come later.
//
// Failover: a request may carry resume_tokens, the tokens it already generated elsewhere. The
// engine then runs prompt + resume_tokens as its prompt with step_offset = len(resume_tokens):
// sampling draws, stop accounting (sampling.max_new_tokens counts the resumed tokens) and chunk
// indices continue where the interrupted run stopped, so the output equals an uninterrupted run.
//
// Thread-safety: all public methods are thread-safe. Sinks run on the step thread, never under
// the host's lock: a sink may call Cancel() or Submit() but must not block for long.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/engine/engine.h"
#include "runtime/sampling/sampling_params.h"
#include "runtime/sampling/stop_condition.h"

namespace rackserve::worker {

// A request for this replica, as the coordinator sends it.
struct ReplicaRequest {
  std::string request_id;              // non-empty, unique among the host's requests in flight
  std::vector<int32_t> prompt;         // token ids, non-empty, inside the vocabulary
  sampling::SamplingParams sampling;   // max_new_tokens counts resume_tokens too
  std::vector<int32_t> resume_tokens;  // generated elsewhere before failover; may be empty
  // Hold the tokens after the first step's until the final chunk (see the top): fewer, larger
  // chunks for clients that do not stream tokens.
  bool deliver_at_end = false;
};

// Names one accepted Submit() call; unique for the host's lifetime.
using SubmissionId = uint64_t;

// Consecutive generated tokens of one request, as a StepSink sees them (the tokens borrowed).
struct ChunkView {
  uint64_t tag = 0;                    // the tag the request was submitted with
  std::span<const int32_t> token_ids;  // valid only during the DeliverStep() call; may be empty
                                       // on a final chunk
  int64_t first_index = 0;  // index of token_ids[0] among all generated tokens (resumed ones
                            // included); on an empty chunk, the next index
  sampling::FinishReason finish = sampling::FinishReason::kNone;  // set on the final chunk only
  int64_t prompt_tokens = 0;  // len(prompt), on the final chunk only
  // Not OK on a final chunk when the request failed here: UNAVAILABLE when the replica failed or
  // shut down (the coordinator retries it elsewhere).
  absl::Status status;
};

// Receives the chunks of every request submitted with it, a step at a time (see the top).
class StepSink {
 public:
  virtual ~StepSink() = default;
  // Called on a host's step thread, never under its lock, with a non-empty batch of chunks of
  // distinct requests; each request's chunks arrive in index order over the calls.
  virtual void DeliverStep(std::span<const ChunkView> chunks) = 0;
};

// Cumulative counters since the host started (monotonic), plus the current occupancy.
struct ReplicaCounters {
  std::string replica_id;
  int64_t generated_tokens = 0;  // tokens handed to sinks (a deliver_at_end request's held ones
                                 // when they go out)
  int64_t prompt_tokens = 0;     // len(prompt) of admitted requests (resumed tokens not counted)
  int64_t steps = 0;             // engine steps that ran a batch
  int64_t running = 0;           // sequences of the last step's batch still in flight
  int64_t waiting = 0;           // requests in flight but not running
  int64_t kv_blocks_used = 0;    // after the last step
  int64_t kv_blocks_total = 0;
  double busy_seconds = 0;        // wall time spent in engine steps
  // Wall time the step thread waited with no request to run (none running, queued or being
  // cancelled), the current wait included: a GPU starved of work.
  double idle_seconds = 0;
  int64_t free_token_credit = 0;  // tokens of KV neither used nor reserved (see the top)
  int64_t reserved_tokens = 0;    // tokens of KV reserved by the requests in flight
};

class ReplicaHost {
 public:
  // Takes a loaded engine and starts the step thread.
  ReplicaHost(std::string replica_id, std::unique_ptr<engine::Engine> engine);
  // Loads the model directory into a new engine.
  static absl::StatusOr<std::unique_ptr<ReplicaHost>> Load(std::string replica_id,
                                                           const std::string& model_dir,
                                                           const engine::EngineOptions& options);
  // Stops the step thread; requests still in flight end with an UNAVAILABLE final chunk.
  ~ReplicaHost();
  ReplicaHost(const ReplicaHost&) = delete;
  ReplicaHost& operator=(const ReplicaHost&) = delete;

  // Validates and queues a request whose chunks go to `sink` (non-null; the host holds it until
  // the final chunk is delivered) in per-step batches, each chunk carrying `tag`.
  // INVALID_ARGUMENT naming the field (request_id, prompt_token_ids[i], resume_token_ids[i],
  // sampling.*, a request longer than the context or the KV cache); ALREADY_EXISTS for a
  // request_id in flight; UNAVAILABLE when the host is draining or its engine failed. On error
  // the sink is never called for this request.
  absl::StatusOr<SubmissionId> Submit(ReplicaRequest request, std::shared_ptr<StepSink> sink,
                                      uint64_t tag);
  // Ends the submission of `request_id` now in flight; its final chunk (kCancelled) follows.
  // NOT_FOUND for an id not in flight.
  absl::Status Cancel(std::string_view request_id);
  // As Cancel(request_id), but only while `submission` is the one in flight: NOT_FOUND once it
  // ended, even when the same request_id was submitted again since.
  absl::Status Cancel(std::string_view request_id, SubmissionId submission);
  // Stops admitting (Submit answers UNAVAILABLE); requests in flight run to completion.
  void Drain();
  // Waits until no request is in flight (every final chunk handed to its sink, or about to
  // be); false on timeout.
  bool WaitIdle(absl::Duration timeout);

  const std::string& replica_id() const { return replica_id_; }
  const model::ModelConfig& model_config() const { return engine_->config(); }
  bool draining() const;
  // OK, or the UNAVAILABLE status the requests of a failed engine ended with.
  absl::Status failure() const;
  int64_t requests_in_flight() const;
  ReplicaCounters counters() const;

 private:
  struct InFlight {
    SubmissionId submission = 0;
    int64_t reserved_tokens = 0;  // the most KV the request can occupy
  };
  // Where a request's chunks go: `sink`, each chunk carrying `tag`.
  struct Receiver {
    uint64_t tag = 0;
    std::shared_ptr<StepSink> sink;
  };
  struct Queued {
    SubmissionId submission = 0;
    ReplicaRequest request;
    Receiver receiver;
  };
  // A request in the engine, whose RequestId is its SubmissionId and whose caller_tag is the
  // Active's address (a step reaches it from an event without a lookup); step thread only.
  struct Active {
    int64_t next_index = 0;  // index of the next token to deliver
    int64_t prompt_tokens = 0;
    Receiver receiver;
    std::string request_id;
    bool cancelled = false;  // the engine was told to cancel it
  };
  // One request's chunk of the current step; its tokens are tokens_[begin, end).
  struct Outgoing {
    engine::RequestId id = 0;
    Active* active = nullptr;  // in active_, until the step's erasures
    size_t begin = 0;
    size_t end = 0;
    sampling::FinishReason finish = sampling::FinishReason::kNone;
  };
  // The views of one StepSink in the current step.
  struct SinkBatch {
    StepSink* sink = nullptr;
    std::vector<ChunkView> views;  // capacity reused across steps
  };

  // The tokens of KV the request may occupy, or INVALID_ARGUMENT naming the field.
  absl::StatusOr<int64_t> Validate(const ReplicaRequest& request) const;
  // Hands one chunk to `receiver` on its own (rejections and failures: the rare paths).
  static void HandOne(const Receiver& receiver, const ChunkView& view);
  // Queues a cancel of `request_id`'s submission in flight, if it is `submission` (any if unset).
  absl::Status QueueCancel(std::string_view request_id, std::optional<SubmissionId> submission);
  void StepLoop();
  // Step thread: moves queued requests and cancellations into the engine.
  void Admit(std::deque<Queued> queued, std::vector<SubmissionId> cancels);
  // Step thread: ends requests that never ran with a final chunk carrying `status`.
  void Reject(std::deque<Queued> queued, const absl::Status& status);
  // Step thread: one engine step, its chunks delivered; the engine's error when it failed.
  absl::Status RunStep();
  // Step thread: ends every active request with `status` (engine failure or shutdown).
  void FailAll(const absl::Status& status);
  // Hands `active` its final chunk: the `held` tokens and `status`.
  void FailOne(const Active& active, std::span<const int32_t> held, const absl::Status& status);
  // Step thread: takes the request out of the in-flight set, just before its final chunk.
  void Finish(const std::string& request_id);
  // Takes the request out of the in-flight set; mu_ held.
  void FinishLocked(const std::string& request_id);
  // Step thread: the batch of `sink` in the current step, claimed on first use.
  SinkBatch& BatchFor(StepSink* sink);

  const std::string replica_id_;
  const std::unique_ptr<engine::Engine> engine_;  // step thread only (config() is immutable)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                  // guarded by mu_
  bool draining_ = false;              // guarded by mu_
  absl::Status failure_;               // not OK once the engine failed; guarded by mu_
  std::deque<Queued> queued_;          // guarded by mu_
  std::vector<SubmissionId> cancels_;  // guarded by mu_
  SubmissionId next_submission_ = 1;   // guarded by mu_
  // Accepted, not yet finished, by request_id; guarded by mu_.
  absl::flat_hash_map<std::string, InFlight> in_flight_;
  int64_t reserved_tokens_ = 0;  // sum of in_flight_'s reserved_tokens; guarded by mu_
  ReplicaCounters counters_;     // free_token_credit computed by counters(); guarded by mu_
  // When the step thread started waiting for work, while it waits; guarded by mu_.
  std::optional<std::chrono::steady_clock::time_point> idle_since_;

  // Step thread only. Node-based: an Active stays where it is until erased (engine events and
  // Outgoing point to it).
  absl::node_hash_map<engine::RequestId, Active> active_;
  std::vector<Outgoing> outgoing_;  // the current step's chunks, in event order
  std::vector<int32_t> tokens_;     // their tokens
  std::vector<SinkBatch> batches_;  // the current step's StepSinks; first num_batches_ in use
  size_t num_batches_ = 0;

  std::thread thread_;  // last: starts after every member is ready
};

}  // namespace rackserve::worker
