// ReplicaHost: one model replica served on this worker — an Engine and the one step thread that
// drives it.
//
// Submit() and Cancel() may be called from any thread: they validate and queue. The step thread
// admits queued requests into the engine, runs steps, and hands each request's tokens to its
// ChunkSink as they are produced (one chunk per request per step). Every accepted request ends
// with exactly one final chunk (finish != kNone): after its last token, on Cancel(), or with an
// UNAVAILABLE status when the engine failed or the host shut down. A request leaves the in-flight
// set just before its final chunk is handed over, so the sink may resubmit the same request_id.
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
// the host's lock: a sink may call Cancel() but must not block for long.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
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
};

// Names one accepted Submit() call; unique for the host's lifetime.
using SubmissionId = uint64_t;

// Consecutive generated tokens of one request.
struct TokenChunk {
  std::vector<int32_t> token_ids;  // may be empty on a final chunk
  int64_t first_index = 0;         // index of token_ids[0] among all generated tokens (resumed
                                   // ones included); on an empty chunk, the next index
  sampling::FinishReason finish = sampling::FinishReason::kNone;  // set on the final chunk only
  int64_t prompt_tokens = 0;  // len(prompt), on the final chunk only
  // Not OK on a final chunk when the request failed here: UNAVAILABLE when the replica failed or
  // shut down (the coordinator retries it elsewhere).
  absl::Status status;
};

// Called on the step thread with each chunk of one request, in order.
using ChunkSink = std::function<void(const TokenChunk&)>;

// Cumulative counters since the host started (monotonic), plus the current occupancy.
struct ReplicaCounters {
  std::string replica_id;
  int64_t generated_tokens = 0;  // tokens handed to sinks
  int64_t prompt_tokens = 0;     // len(prompt) of admitted requests (resumed tokens not counted)
  int64_t steps = 0;             // engine steps that ran a batch
  int64_t running = 0;           // sequences of the last step's batch still in flight
  int64_t waiting = 0;           // requests in flight but not running
  int64_t kv_blocks_used = 0;    // after the last step
  int64_t kv_blocks_total = 0;
  double busy_seconds = 0;        // wall time spent in engine steps
  int64_t free_token_credit = 0;  // tokens of KV neither used nor reserved (see the top)
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

  // Validates and queues a request whose chunks go to `sink`. INVALID_ARGUMENT naming the field
  // (request_id, prompt_token_ids[i], resume_token_ids[i], sampling.*, a request longer than the
  // context or the KV cache); ALREADY_EXISTS for a request_id in flight; UNAVAILABLE when the
  // host is draining or its engine failed. On error the sink is never called.
  absl::StatusOr<SubmissionId> Submit(ReplicaRequest request, ChunkSink sink);
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
  struct Queued {
    SubmissionId submission = 0;
    ReplicaRequest request;
    ChunkSink sink;
  };
  // A request in the engine, whose RequestId is its SubmissionId; step thread only.
  struct Active {
    std::string request_id;
    ChunkSink sink;
    int64_t prompt_tokens = 0;
    int64_t next_index = 0;  // index of the next token to deliver
    bool cancelled = false;  // the engine was told to cancel it
  };

  // The tokens of KV the request may occupy, or INVALID_ARGUMENT naming the field.
  absl::StatusOr<int64_t> Validate(const ReplicaRequest& request) const;
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
  // Step thread: takes the request out of the in-flight set, just before its final chunk.
  void Finish(const std::string& request_id);

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

  // Step thread only.
  absl::flat_hash_map<engine::RequestId, Active> active_;

  std::thread thread_;  // last: starts after every member is ready
};

}  // namespace rackserve::worker
