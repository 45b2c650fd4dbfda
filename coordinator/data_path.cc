#include "coordinator/data_path.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/dispatcher.h"
#include "grpc/grpc.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/wire_conversion.h"
#include "runtime/base/thread_name.h"

namespace rackserve::coordinator {
namespace {

// Keepalive on worker channels: a hung or partitioned worker breaks its link within
// kKeepaliveTimeMs + the link silence timeout even when its heartbeats are not the signal. (The
// worker's server must accept pings this often: GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_
// DATA_MS <= kKeepaliveTimeMs and GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, else it answers with
// GOAWAY "too_many_pings".) A ping unanswered in time closes the connection, and the link breaks.
constexpr int kKeepaliveTimeMs = 1000;
// How often the redispatch thread destroys retired links when it has nothing else to do.
constexpr absl::Duration kRedispatchPoll = absl::Milliseconds(100);

std::shared_ptr<grpc::Channel> WorkerChannel(const std::string& address,
                                             absl::Duration silence_timeout) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(absl::ToInt64Milliseconds(silence_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // keep pinging a quiet stream
  // One channel per worker: its own connection, not shared with the other links.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(-1);  // a worker's batch after a stalled Write may be large
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

bool OnVm(const ReplicaSpec& replica, const std::string& vm) {
  return std::any_of(replica.ranks.begin(), replica.ranks.end(),
                     [&](const RankSpec& r) { return r.vm == vm; });
}

}  // namespace

// The fields OnOutbound touches for every batch of tokens come first, together: with tens of
// thousands of flights in flight, each column of a message is a cache miss on its flight, and
// one line per column instead of several was most of the coordinator's time per token (perf).
struct DataPath::Flight {
  // Guarded by the data path's mutex, except `cancelled` and the immutable `observer`.
  WorkerLink* link = nullptr;  // the current attempt's link; null between attempts
  FlightObserver* observer = nullptr;
  size_t replica_index = 0;     // the current attempt's lease.replica_index
  std::vector<int32_t> tokens;  // delivered, in order
  std::optional<absl::Time> first_token;
  std::atomic<bool> cancelled{false};
  bool tracked = true;  // in flights_ (false once it ended)
  int attempts = 0;
  // The current attempt; handle 0 when it is between attempts.
  uint64_t handle = 0;
  int64_t attempt_start = 0;  // tokens.size() when the attempt was submitted
  Lease lease;
  std::optional<absl::Time> first_dispatch;
  FlightRequest request;
};

DataPath::DataPath(DataPathOptions options, RackContext rack)
    : options_(options), rack_(rack), redispatcher_([this] { RedispatchLoop(); }) {}

DataPath::~DataPath() { Shutdown(); }

void DataPath::Shutdown() {
  std::vector<std::unique_ptr<WorkerLink>> links;
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_.exchange(true)) return;
    std::vector<std::shared_ptr<Flight>> left;
    for (auto& [id, flight] : flights_) left.push_back(flight);
    for (const std::shared_ptr<Flight>& flight : left) {
      DetachLocked(*flight);
      EndLocked(*flight, v1::FINISH_REASON_UNSPECIFIED,
                absl::UnavailableError("the coordinator is shutting down"));
    }
    redispatch_.clear();
  }
  rack_.dispatcher->Wake();
  redispatcher_.join();
  {
    absl::MutexLock lock(&mutex_);
    for (auto& [id, link] : links_) links.push_back(std::move(link));
    links_.clear();
    for (auto& link : retired_links_) links.push_back(std::move(link));
    retired_links_.clear();
  }
  links.clear();  // joins their threads; their OnLinkBroken finds nothing left to fail over
}

absl::Status DataPath::Start(FlightRequest request, FlightObserver* observer,
                             const std::function<bool()>& client_gone) {
  auto flight = std::make_shared<Flight>();
  flight->request = std::move(request);
  flight->observer = observer;
  flight->tokens.reserve(static_cast<size_t>(flight->request.params.max_new_tokens));
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return absl::UnavailableError("the coordinator is shutting down");
    if (!flights_.emplace(flight->request.id, flight).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("request_id: \"", flight->request.id, "\" is already in flight"));
    }
  }
  Flight* f = flight.get();
  absl::Status error;
  if (Place(flight, [f, &client_gone] { return f->cancelled.load() || client_gone(); },
            &error)) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&mutex_);
  if (!flight->tracked) return absl::OkStatus();  // it ended (cancelled): OnEnd was called
  flights_.erase(flight->request.id);
  flight->tracked = false;
  return error;
}

bool DataPath::Place(const std::shared_ptr<Flight>& flight, const std::function<bool()>& cancelled,
                     absl::Status* error) {
  const FlightRequest& request = flight->request;
  int64_t delivered;
  {
    absl::MutexLock lock(&mutex_);
    delivered = static_cast<int64_t>(flight->tokens.size());
  }
  const int64_t cost =
      static_cast<int64_t>(request.prompt.size()) + request.params.max_new_tokens - delivered;
  absl::StatusOr<Lease> lease =
      rack_.dispatcher->Acquire(request.prompt, cost, cancelled, options_.dispatch_timeout,
                                [this] { return CompletionsPerSecond(); },
                                request.pinned_replica);
  const bool stale_lease =
      lease.ok() &&
      std::any_of(lease->worker_ids.begin(), lease->worker_ids.end(),
                  [&](const std::string& id) { return !rack_.registry->Alive(id); });

  absl::MutexLock lock(&mutex_);
  if (!lease.ok() || flight->cancelled || stopping_) {
    if (lease.ok()) rack_.dispatcher->Release(*lease, lease->cost);
    if (flight->cancelled || cancelled()) {
      flight->cancelled = true;
      EndLocked(*flight, v1::FINISH_REASON_CANCELLED, absl::OkStatus());
      return false;
    }
    *error = lease.ok() ? absl::UnavailableError("the coordinator is shutting down")
                        : lease.status();
    return false;
  }
  if (!flight->first_dispatch.has_value()) flight->first_dispatch = rack_.clock->Now();
  ++flight->attempts;
  flight->handle = next_handle_++;
  flight->lease = *std::move(lease);
  flight->replica_index = flight->lease.replica_index;
  flight->attempt_start = delivered;
  flight->link = LinkLocked(flight->lease.leader_worker_id, flight->lease.address);
  by_handle_.emplace(flight->handle, flight);
  if (stale_lease) {
    // A worker of the replica died after the lease was issued: OnWorkerDead's scan may have
    // missed this attempt (it was not published yet).
    DetachLocked(*flight);
    FailOverLocked(flight, absl::UnavailableError(absl::StrCat(
                               "replica ", flight->lease.replica_id, " lost a worker")));
    return true;
  }
  v1::ReplicaRequest submit;
  submit.set_replica_id(flight->lease.replica_id);
  submit.set_request_id(request.id);
  submit.set_handle(flight->handle);
  submit.mutable_prompt_token_ids()->Assign(request.prompt.begin(), request.prompt.end());
  wire::ToProto(request.params, submit.mutable_sampling());
  submit.mutable_resume_token_ids()->Assign(flight->tokens.begin(), flight->tokens.end());
  submit.set_deliver_at_end(!request.stream_tokens);
  flight->link->Submit(std::move(submit));
  return true;
}

WorkerLink* DataPath::LinkLocked(const std::string& worker_id, const std::string& address) {
  std::unique_ptr<WorkerLink>& link = links_[worker_id];
  if (link == nullptr) {
    link = std::make_unique<WorkerLink>(worker_id,
                                        WorkerChannel(address, options_.link_silence_timeout),
                                        static_cast<WorkerLink::Receiver*>(this));
  }
  return link.get();
}

void DataPath::RetireLinkLocked(WorkerLink* link) {
  auto it = links_.find(link->worker_id());
  if (it == links_.end() || it->second.get() != link) return;
  link->Close();
  retired_links_.push_back(std::move(it->second));
  links_.erase(it);
}

void DataPath::DetachLocked(Flight& flight) {
  if (flight.handle == 0) return;
  by_handle_.erase(flight.handle);
  const int64_t delivered = static_cast<int64_t>(flight.tokens.size()) - flight.attempt_start;
  rack_.dispatcher->Release(flight.lease, std::max<int64_t>(0, flight.lease.cost - delivered));
  flight.handle = 0;
  flight.link = nullptr;
}

void DataPath::FailOverLocked(const std::shared_ptr<Flight>& flight, const absl::Status& why) {
  if (flight->cancelled) {
    EndLocked(*flight, v1::FINISH_REASON_CANCELLED, absl::OkStatus());
    return;
  }
  if (!flight->request.pinned_replica.empty() || flight->attempts >= options_.max_attempts) {
    EndLocked(*flight, v1::FINISH_REASON_UNSPECIFIED,
              absl::UnavailableError(absl::StrCat(
                  "request ", flight->request.id, ": gave up after ", flight->attempts,
                  flight->attempts == 1 ? " replica" : " replicas",
                  " failed; last: ", std::string(why.message()))));
    return;
  }
  redispatch_.push_back(flight);
}

void DataPath::EndLocked(Flight& flight, v1::FinishReason finish, const absl::Status& status) {
  if (!flight.tracked) return;
  flight.tracked = false;
  flights_.erase(flight.request.id);
  const absl::Time now = rack_.clock->Now();
  v1::Completion completion;
  completion.set_request_id(flight.request.id);
  if (!status.ok()) {
    completion.set_error_code(static_cast<int32_t>(status.code()));
    completion.set_error_message(std::string(status.message()));
  } else {
    const int64_t prompt_tokens = static_cast<int64_t>(flight.request.prompt.size());
    const int64_t generated = static_cast<int64_t>(flight.tokens.size());
    completion.mutable_token_ids()->Assign(flight.tokens.begin(), flight.tokens.end());
    completion.set_finish_reason(finish);
    completion.set_prompt_tokens(prompt_tokens);
    v1::Timings* t = completion.mutable_timings();
    t->set_queue_seconds(
        absl::ToDoubleSeconds(flight.first_dispatch.value_or(now) - flight.request.arrival));
    t->set_ttft_seconds(flight.first_token.has_value()
                            ? absl::ToDoubleSeconds(*flight.first_token - flight.request.arrival)
                            : 0);
    t->set_total_seconds(absl::ToDoubleSeconds(now - flight.request.arrival));
    if (rack_.latency != nullptr && flight.first_token.has_value()) {
      rack_.latency->RecordRequest(t->ttft_seconds(), t->total_seconds(), generated);
    }
    rack_.throughput->RecordPrompt(now, prompt_tokens);
    absl::MutexLock completions_lock(&completions_mutex_);
    completions_.Add(now, 1);
    ++completed_;
  }
  flight.observer->OnEnd(std::move(completion));
}

void DataPath::OnOutbound(WorkerLink* link, const v1::ServeOutbound& outbound) {
  const absl::Time now = rack_.clock->Now();
  const int64_t received = outbound.token_ids_size();
  int64_t delivered = 0;
  int64_t discarded = 0;
  bool malformed = outbound.handles_size() != outbound.counts_size();
  {
    absl::MutexLock lock(&mutex_);
    // First every column's flight, prefetched, then the appends: the flights' cache misses
    // overlap instead of following one another.
    std::vector<Flight*> flights(static_cast<size_t>(outbound.handles_size()), nullptr);
    for (int i = 0; i < outbound.handles_size(); ++i) {
      auto it = by_handle_.find(outbound.handles(i));
      if (it == by_handle_.end()) continue;
      flights[i] = it->second.get();
      __builtin_prefetch(flights[i]);
    }
    // Delivered tokens per replica (by index), charged to the dispatcher once per message; a
    // worker serves a handful of replicas, so a short list.
    std::vector<std::pair<const Lease*, int64_t>> per_replica;
    int64_t offset = 0;
    for (int i = 0; i < outbound.handles_size() && !malformed; ++i) {
      const int64_t count = outbound.counts(i);
      if (offset + count > received) {
        malformed = true;
        break;
      }
      const std::span<const int32_t> tokens(outbound.token_ids().data() + offset,
                                            static_cast<size_t>(count));
      offset += count;
      Flight* flight = flights[i];
      if (flight == nullptr || flight->link != link || flight->cancelled) {
        discarded += count;  // an abandoned attempt, or one the client no longer wants
        continue;
      }
      const int64_t first_index = static_cast<int64_t>(flight->tokens.size());
      flight->tokens.insert(flight->tokens.end(), tokens.begin(), tokens.end());
      delivered += count;
      auto charged = std::find_if(per_replica.begin(), per_replica.end(), [&](const auto& c) {
        return c.first->replica_index == flight->replica_index;
      });
      if (charged == per_replica.end()) {
        per_replica.emplace_back(&flight->lease, 0);
        charged = per_replica.end() - 1;
      }
      charged->second += count;
      flight->observer->OnTokens(flight->request.id, first_index, tokens);
      if (!flight->first_token.has_value() && count > 0) {
        flight->first_token = now;
        flight->observer->OnFirstToken(flight->request.id, tokens[0],
                                       absl::ToDoubleSeconds(now - flight->request.arrival));
      }
    }
    // Before any attempt below ends (its lease goes with it).
    for (const auto& [lease, tokens] : per_replica) rack_.dispatcher->Delivered(*lease, tokens);
    if (!malformed) {
      discarded += received - offset;  // tokens no column claimed (a worker bug): not delivered
      for (const v1::SubmissionEnd& end : outbound.ends()) {
        auto it = by_handle_.find(end.handle());
        if (it == by_handle_.end() || it->second->link != link) continue;
        std::shared_ptr<Flight> flight = it->second;
        DetachLocked(*flight);
        if (end.error_code() == 0) {
          EndLocked(*flight, end.finish_reason(), absl::OkStatus());
          continue;
        }
        const absl::Status status(static_cast<absl::StatusCode>(end.error_code()),
                                  absl::StrCat("replica ", flight->lease.replica_id, ": ",
                                               end.error_message()));
        if (status.code() == absl::StatusCode::kUnavailable) {
          // The worker answered: its replica failed or drains. It stays alive.
          rack_.dispatcher->OnRefused(flight->lease.replica_id);
          FailOverLocked(flight, status);
        } else {
          EndLocked(*flight, v1::FINISH_REASON_UNSPECIFIED, status);
        }
      }
    }
  }
  if (malformed) {
    discarded += received - delivered;
    link->Close();  // its flights fail over when the link reports broken
  }
  rack_.throughput->RecordReceived(link->worker_id(), received);
  rack_.throughput->RecordDelivered(now, delivered);
  if (discarded > 0) rack_.throughput->RecordDiscarded(discarded);
}

void DataPath::OnLinkBroken(WorkerLink* link, const absl::Status& status) {
  const std::string worker_id = link->worker_id();
  size_t failed_over = 0;
  {
    absl::MutexLock lock(&mutex_);
    std::vector<std::shared_ptr<Flight>> on_link;
    for (const auto& [handle, flight] : by_handle_) {
      if (flight->link == link) on_link.push_back(flight);
    }
    for (const std::shared_ptr<Flight>& flight : on_link) {
      DetachLocked(*flight);
      FailOverLocked(flight, absl::UnavailableError(absl::StrCat(
                                 "worker ", worker_id, " unreachable: ", status.message())));
    }
    failed_over = on_link.size();
    RetireLinkLocked(link);
    if (stopping_) return;
  }
  // The worker is gone unless the coordinator is draining it (it may exit when done), or was
  // declared dead already (its heartbeats stopped first).
  const bool gone = rack_.registry->Alive(worker_id) && !rack_.registry->DrainRequested(worker_id);
  if (gone || failed_over > 0) {
    std::fprintf(stderr, "worker %s (vm %s) unreachable: %s; %zu requests fail over\n",
                 worker_id.c_str(), rack_.registry->VmOf(worker_id).c_str(),
                 std::string(status.message()).c_str(), failed_over);
  }
  if (gone) OnWorkerDead(worker_id);
  rack_.dispatcher->Wake();
}

void DataPath::OnWorkerDead(const std::string& worker_id) {
  // Marked dead first: an attempt placed after the scan below sees it in Place (stale lease).
  rack_.registry->MarkDead(worker_id);
  {
    absl::MutexLock lock(&mutex_);
    int64_t moved = 0;
    std::vector<std::shared_ptr<Flight>> affected;
    for (const auto& [handle, flight] : by_handle_) {
      const std::vector<std::string>& ids = flight->lease.worker_ids;
      if (std::find(ids.begin(), ids.end(), worker_id) != ids.end()) affected.push_back(flight);
    }
    for (const std::shared_ptr<Flight>& flight : affected) {
      // The leader may be alive (a follower died): stop the attempt there.
      if (flight->link->worker_id() != worker_id) flight->link->Cancel(flight->handle);
      DetachLocked(*flight);
      FailOverLocked(flight, absl::UnavailableError(absl::StrCat("worker ", worker_id,
                                                                 " of its replica died")));
      ++moved;
    }
    std::fprintf(stderr, "worker %s declared dead; %lld requests fail over\n", worker_id.c_str(),
                 static_cast<long long>(moved));
    auto it = links_.find(worker_id);
    if (it != links_.end()) RetireLinkLocked(it->second.get());
  }
  rack_.dispatcher->Wake();
}

void DataPath::DropWorker(const std::string& worker_id) {
  absl::MutexLock lock(&mutex_);
  auto it = links_.find(worker_id);
  if (it != links_.end()) RetireLinkLocked(it->second.get());
}

absl::Status DataPath::Cancel(const std::string& id) {
  {
    absl::MutexLock lock(&mutex_);
    auto it = flights_.find(id);
    if (it == flights_.end()) {
      return absl::NotFoundError(absl::StrCat("request_id: no request \"", id, "\" in flight"));
    }
    Flight& flight = *it->second;
    flight.cancelled = true;
    if (flight.handle != 0) flight.link->Cancel(flight.handle);
  }
  rack_.dispatcher->Wake();  // a flight waiting for credit notices at once
  return absl::OkStatus();
}

void DataPath::RedispatchLoop() {
  base::NameThisThread("redispatch");
  while (true) {
    std::shared_ptr<Flight> flight;
    std::vector<std::unique_ptr<WorkerLink>> retired;
    {
      absl::MutexLock lock(&mutex_);
      if (redispatch_.empty() && !stopping_) {
        mutex_.AwaitWithTimeout(absl::Condition(
                                    +[](DataPath* self) {
                                      self->mutex_.AssertHeld();
                                      return self->stopping_ || !self->redispatch_.empty();
                                    },
                                    this),
                                kRedispatchPoll);
      }
      if (stopping_) return;
      retired.swap(retired_links_);
      if (!redispatch_.empty()) {
        flight = std::move(redispatch_.front());
        redispatch_.pop_front();
      }
    }
    retired.clear();  // joins the links' threads, outside the lock their callbacks take
    if (flight == nullptr) continue;
    Flight* f = flight.get();
    absl::Status error;
    if (Place(flight, [f, this] { return f->cancelled.load() || stopping_.load(); },
              &error)) {
      continue;
    }
    absl::MutexLock lock(&mutex_);
    EndLocked(*flight, v1::FINISH_REASON_UNSPECIFIED, error);
  }
}

int64_t DataPath::in_flight() const {
  absl::MutexLock lock(&mutex_);
  return static_cast<int64_t>(flights_.size());
}

int64_t DataPath::completed() const {
  absl::MutexLock lock(&completions_mutex_);
  return completed_;
}

double DataPath::CompletionsPerSecond() const {
  absl::MutexLock lock(&completions_mutex_);
  return completions_.Rate(rack_.clock->Now(), absl::Seconds(10));
}

int64_t DataPath::RequestsOnVm(const std::string& vm) const {
  absl::MutexLock lock(&mutex_);
  int64_t count = 0;
  for (const auto& [handle, flight] : by_handle_) {
    const ReplicaSpec* replica = rack_.topology->FindReplica(flight->lease.replica_id);
    if (replica != nullptr && OnVm(*replica, vm)) ++count;
  }
  return count;
}

}  // namespace rackserve::coordinator
