// DataPath: runs admitted requests ("flights") on the rack's replicas, over one WorkerLink (a
// multiplexed Serve stream) per worker — no thread and no stream per request.
//
// Start() places a request through the Dispatcher (blocking the caller while it waits for
// credit) and submits it on its replica's leader worker's link. Tokens arrive in batches on the
// links' reader threads and are appended to the flight, which tells its observer. Every flight
// that Start() accepted ends exactly once with FlightObserver::OnEnd: finished, cancelled, or
// failed.
//
// Failover: when a worker of a flight's replica dies (its link breaks, the registry's heartbeat
// monitor or the owner reports it, or its replica answers UNAVAILABLE), the flight is placed
// again by the redispatch thread, with resume_token_ids = the tokens delivered so far; the next
// replica continues at that index, so the client sees every token exactly once. After
// `max_attempts` replicas the flight fails with UNAVAILABLE naming the last failure. Handles
// name attempts, never flights: a late token or end of an abandoned attempt is discarded.
//
// The audit: every token read from a link is counted as received from its worker; those that
// belong to no live attempt (a cancelled or failed-over one) as discarded; the rest as delivered
// — appended to the flight and handed to its observer.
//
// Thread-safe. Observers are called under the data path's lock: they must be quick, must not
// block, and must not call back into it. Keeps the RackContext's parts, which must outlive it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/rack_context.h"
#include "coordinator/throughput.h"
#include "coordinator/worker_link.h"
#include "rackserve/v1/rack.pb.h"
#include "runtime/sampling/sampling_params.h"

namespace rackserve::coordinator {

// A validated request.
struct FlightRequest {
  std::string id;  // unique among flights
  std::vector<int32_t> prompt;
  sampling::SamplingParams params;
  absl::Time arrival;
  std::string pinned_replica;  // this replica only (no routing, no failover); empty: any
  // The client streams tokens (Generate). When false (SubmitBatch: a completion at the end), the
  // workers hold a request's tokens after its first until its end (deliver_at_end): OnTokens then
  // hears of the first tokens, then of the rest at once before OnEnd.
  bool stream_tokens = true;
};

// Where a flight's output goes.
class FlightObserver {
 public:
  virtual ~FlightObserver() = default;
  // Fresh tokens, in order; tokens[0] has index `first_index` among the generated tokens.
  virtual void OnTokens(const std::string& /*id*/, int64_t /*first_index*/,
                        std::span<const int32_t> /*tokens*/) {}
  // The flight's first token is out (just after its OnTokens).
  virtual void OnFirstToken(const std::string& /*id*/, int32_t /*token*/,
                            double /*ttft_seconds*/) {}
  // The end, exactly once: every generated token, the finish reason and timings, or the error
  // (Completion.error_code != 0). Nothing follows it.
  virtual void OnEnd(v1::Completion completion) = 0;
};

struct DataPathOptions {
  absl::Duration dispatch_timeout = absl::Seconds(60);  // wait for a replica before UNAVAILABLE
  int max_attempts = 4;                                 // replicas one request may be tried on
  // A worker whose connection answers no keepalive ping for this long loses its link (and is
  // declared dead). Set to the heartbeat timeout: on a loaded host a live worker may not run for
  // seconds, and its link must not be judged faster than its heartbeats.
  absl::Duration link_silence_timeout = absl::Seconds(3);
};

class DataPath final : private WorkerLink::Receiver {
 public:
  DataPath(DataPathOptions options, RackContext rack);
  // Shutdown().
  ~DataPath() override;

  // Places the request and submits it; `observer` (which must live until its OnEnd) hears of
  // it from then on. Blocks while the request waits for credit. An error means nothing was
  // started and the observer is never called: INVALID_ARGUMENT for an id already in flight,
  // RESOURCE_EXHAUSTED (with "retry after <ms> ms") when the queue is full, UNAVAILABLE when no
  // replica could take it in time or the pinned one is not live. A flight cancelled or whose
  // `client_gone()` (polled while it waits, on the caller's thread) turns true before it is
  // placed ends CANCELLED.
  absl::Status Start(FlightRequest request, FlightObserver* observer,
                     const std::function<bool()>& client_gone);
  // Ends the flight: it finishes CANCELLED as soon as its replica confirms (at once when it is
  // not on one). NOT_FOUND for an id not in flight.
  absl::Status Cancel(const std::string& id);
  // Declares the worker dead (Registry::MarkDead) and fails over every flight whose replica has
  // a rank on it. Flights on a newer worker of the same VM are not touched.
  void OnWorkerDead(const std::string& worker_id);
  // Closes the link to a worker the registry forgot.
  void DropWorker(const std::string& worker_id);
  // Ends every flight (UNAVAILABLE), closes every link, stops the redispatch thread. Idempotent.
  void Shutdown();

  int64_t in_flight() const;
  int64_t completed() const;
  double CompletionsPerSecond() const;  // over the last 10 s
  // Flights whose current attempt runs on a replica with a rank on `vm`.
  int64_t RequestsOnVm(const std::string& vm) const;

 private:
  struct Flight;

  void OnOutbound(WorkerLink* link, const v1::ServeOutbound& outbound) override;
  void OnLinkBroken(WorkerLink* link, const absl::Status& status) override;

  // Places the flight and submits its next attempt; false when it could not be placed, with
  // the reason in `error` (the flight is then still tracked, unless it ended).
  bool Place(const std::shared_ptr<Flight>& flight, const std::function<bool()>& cancelled,
             absl::Status* error);
  // The flight's attempt is over: it leaves its handle, the lease's unused cost is released.
  void DetachLocked(Flight& flight) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The attempt failed with `why`: place the flight again (or give up after max_attempts).
  void FailOverLocked(const std::shared_ptr<Flight>& flight, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Ends the flight: OK with `finish`, or `status`.
  void EndLocked(Flight& flight, v1::FinishReason finish, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  WorkerLink* LinkLocked(const std::string& worker_id, const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Takes links out of service (they are destroyed by the redispatch thread, not by their own).
  void RetireLinkLocked(WorkerLink* link) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void RedispatchLoop();

  const DataPathOptions options_;
  const RackContext rack_;

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, std::shared_ptr<Flight>> flights_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<Flight>> by_handle_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mutex_) = 1;
  absl::flat_hash_map<std::string, std::unique_ptr<WorkerLink>> links_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::unique_ptr<WorkerLink>> retired_links_ ABSL_GUARDED_BY(mutex_);
  std::deque<std::shared_ptr<Flight>> redispatch_ ABSL_GUARDED_BY(mutex_);
  // A lock of their own, taken last: the dispatcher asks for the rate while holding its lock
  // (and the data path calls the dispatcher while holding mutex_).
  mutable absl::Mutex completions_mutex_ ABSL_ACQUIRED_AFTER(mutex_);
  RateWindow completions_ ABSL_GUARDED_BY(completions_mutex_);
  int64_t completed_ ABSL_GUARDED_BY(completions_mutex_) = 0;
  // Set once, by Shutdown(); read under mutex_ and by waits that may not take it.
  std::atomic<bool> stopping_{false};

  std::thread redispatcher_;  // last: starts after every member is ready
};

}  // namespace rackserve::coordinator
