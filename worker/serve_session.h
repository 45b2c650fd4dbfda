// ServeSession: the state of one WorkerService.Serve stream, independent of gRPC — the
// submissions made on it, by the coordinator's handle, and the outbox of tokens and ends the
// stream writes next.
//
// The stream's reader hands each ServeInbound to Submit() and Cancel(); the stream's one writer
// loops on Take(), which hands over everything accumulated since its last call as one
// ServeOutbound (natural batching: while a Write is in flight, chunks pile up). Every submission
// gets exactly one SubmissionEnd, after its last token (in the same or a later Take()):
// finished (finish_reason, prompt_tokens; CANCELLED after Cancel()), or failed (error_code and
// error_message: NOT_FOUND naming an unknown replica_id, INVALID_ARGUMENT naming the field, a
// handle already in flight on this stream included, UNAVAILABLE when the replica failed, drains
// or shut down, ALREADY_EXISTS for a request_id the replica already runs). A submission refused
// for its handle being in flight reports its end under that handle too, at once: the submission
// in flight keeps running and ends on its own later.
//
// Outbox layout (ServeOutbound): handles[i] produced the next counts[i] tokens of token_ids,
// which concatenates them in column order; a submission's tokens continue from index
// len(resume_token_ids) of its request, in order. Consecutive tokens of one handle share a column
// entry. ends follow the tokens of the same message.
//
// Ownership: created shared (Create()); the replicas hold it, as the StepSink of its submissions
// until their final chunks, since they deliver on their step threads and may outlive the stream.
// The registry must outlive every call of Submit(), Cancel() and CancelAll(). A session whose
// stream broke must be told (CancelAll()): the replicas' requests must not keep running for nobody.
//
// Thread-safety: all methods are thread-safe. Typically one reader thread submits and cancels,
// one writer thread takes, and the replicas' step threads deliver. A Cancel() that races with the
// Submit() of its handle may miss it: the stream's reader calls both, in the stream's order.
// DeliverStep() is the hot path (millions of tokens/s per process): the session is the
// StepSink of its submissions (tagged with their handles), so each replica step delivers all of
// its chunks for this session in one call: one mutex acquisition, amortized appends to the outbox
// columns, and a wake-up of the writer only when the outbox goes from empty to non-empty.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rackserve/v1/worker.pb.h"
#include "worker/replica_host.h"
#include "worker/replica_registry.h"

namespace rackserve::worker {

class ServeSession : public StepSink, public std::enable_shared_from_this<ServeSession> {
 public:
  // What Take() did.
  enum class TakeResult {
    kTaken,     // `out` holds tokens and/or ends to write
    kTimedOut,  // nothing to write yet
    kDone,      // input closed, every submission ended and taken: the stream can end
  };

  static std::shared_ptr<ServeSession> Create(ReplicaRegistry* registry);
  ServeSession(const ServeSession&) = delete;
  ServeSession& operator=(const ServeSession&) = delete;

  // Validates the request and submits it to its replica under request.handle(). Refusals are not
  // returned: they become the submission's SubmissionEnd (see the top). After CancelAll() the
  // request is not submitted; it ends UNAVAILABLE.
  void Submit(const v1::ReplicaRequest& request);
  // Ends the submission of `handle` now (it ends CANCELLED, after its tokens so far). A handle
  // not in flight (it ended already, or never existed) is ignored.
  void Cancel(uint64_t handle);
  // The client half-closed its side: no Submit() follows. Take() answers kDone once every
  // submission has ended and its end was taken.
  void CloseInput();
  // The stream broke: cancels every submission in flight and closes the input; later Submit()s
  // are refused.
  void CancelAll();

  // Waits up to `timeout` for something to write, then moves all of it into `out` (cleared first;
  // its fields' capacity is reused by the next batch, so pass the same message every time).
  TakeResult Take(absl::Duration timeout, v1::ServeOutbound* out);

  // Hands one step's chunks to the outbox, in order: each chunk's tokens under its tag (the
  // submission's handle), then its end when the chunk is final. The replicas' step threads call
  // this. Precondition: the handle of a final chunk is in flight (a non-final chunk's is not
  // looked up: the hot path stays a plain append).
  void DeliverStep(std::span<const ChunkView> chunks) override;

  // Submissions accepted or being submitted whose end has not been delivered yet.
  int64_t submissions_in_flight() const;

 private:
  struct Flight {
    // All three set once the replica accepted it; host is null while Submit() is in progress.
    ReplicaHost* host = nullptr;
    std::string request_id;
    SubmissionId submission = 0;
  };

  explicit ServeSession(ReplicaRegistry* registry) : registry_(registry) {}

  // Submits to the replica the request whose flight Submit() created; the refusal, if any.
  absl::Status SubmitToHost(uint64_t handle, const v1::ReplicaRequest& request);
  // Appends one chunk to the outbox; mu_ held.
  void AppendLocked(const ChunkView& chunk);
  // Appends a failed end of `handle` to the outbox, waking the writer if needed; mu_ held.
  void AddErrorEnd(uint64_t handle, const absl::Status& status);
  // Whether the outbox holds nothing to write; mu_ held.
  bool OutboxEmpty() const;

  ReplicaRegistry* const registry_;

  mutable std::mutex mu_;
  std::condition_variable outbox_ready_;  // the outbox became non-empty, or the session done
  bool input_closed_ = false;             // guarded by mu_
  bool broken_ = false;                   // CancelAll() was called; guarded by mu_
  absl::flat_hash_map<uint64_t, Flight> flights_;  // by handle; guarded by mu_
  v1::ServeOutbound outbox_;                       // guarded by mu_
};

}  // namespace rackserve::worker
