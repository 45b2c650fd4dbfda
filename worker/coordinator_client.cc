#include "worker/coordinator_client.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "proto/wire_conversion.h"

namespace rackserve::worker {
namespace {

v1::RegisterRequest ToProto(const WorkerIdentity& identity) {
  v1::RegisterRequest request;
  request.set_protocol_version(kProtocolVersion);
  request.set_vm(identity.vm);
  request.set_address(identity.address);
  for (int i = 0; i < identity.num_devices; ++i) {
    v1::Device* device = request.add_devices();
    device->set_index(i);
    device->set_kind(identity.device_kind);
  }
  request.set_model(identity.model);
  request.set_memory_bytes(identity.memory_bytes);
  return request;
}

std::vector<Assignment> FromProto(const v1::RegisterResponse& response, const std::string& vm) {
  std::vector<Assignment> assignments;
  for (const v1::ReplicaAssignment& a : response.assignments()) {
    Assignment assignment;
    assignment.replica_id = a.replica_id();
    assignment.tp = a.tp();
    assignment.pp = a.pp();
    for (const v1::RankPlacement& rank : a.ranks()) {
      if (rank.vm() == vm) assignment.local_devices.push_back(rank.device());
    }
    assignment.leader_here = a.leader_here();
    assignments.push_back(std::move(assignment));
  }
  return assignments;
}

// `c`'s cumulative counters since `since` (the same replica's counters at registration), and its
// gauges as they are.
void ToProto(const ReplicaCounters& c, const ReplicaCounters& since, v1::ReplicaCounters* proto) {
  proto->set_replica_id(c.replica_id);
  proto->set_generated_tokens(c.generated_tokens - since.generated_tokens);
  proto->set_prompt_tokens(c.prompt_tokens - since.prompt_tokens);
  proto->set_steps(c.steps - since.steps);
  proto->set_running(c.running);
  proto->set_waiting(c.waiting);
  proto->set_kv_blocks_used(c.kv_blocks_used);
  proto->set_kv_blocks_total(c.kv_blocks_total);
  proto->set_busy_seconds(c.busy_seconds - since.busy_seconds);
  proto->set_idle_seconds(c.idle_seconds - since.idle_seconds);
  proto->set_free_token_credit(c.free_token_credit);
  proto->set_reserved_tokens(c.reserved_tokens);
  proto->set_read_at_unix_seconds(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
}

bool IsTransient(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace

CoordinatorClient::CoordinatorClient(std::string coordinator_address, WorkerIdentity identity,
                                     CoordinatorClientOptions options)
    : address_(std::move(coordinator_address)),
      identity_(std::move(identity)),
      options_(std::move(options)),
      stub_(v1::CoordinatorService::NewStub(
          grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()))) {}

CoordinatorClient::~CoordinatorClient() { Stop(); }

void CoordinatorClient::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Run(); });
}

void CoordinatorClient::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    if (stream_context_ != nullptr) stream_context_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool CoordinatorClient::WaitRegistered(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
               [this] { return registered_ || stop_ || !status_.ok(); });
  return registered_;
}

std::string CoordinatorClient::worker_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_id_;
}

int64_t CoordinatorClient::heartbeats_sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return heartbeats_sent_;
}

absl::Status CoordinatorClient::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

bool CoordinatorClient::SleepUnlessStopped(absl::Duration d) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, absl::ToChronoNanoseconds(d), [this] { return stop_; });
}

void CoordinatorClient::Run() {
  absl::Duration interval;
  while (RegisterWithRetry(&interval)) Heartbeat(interval);
}

bool CoordinatorClient::RegisterWithRetry(absl::Duration* heartbeat_interval) {
  const v1::RegisterRequest request = ToProto(identity_);
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return false;
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
    v1::RegisterResponse response;
    const absl::Status s = wire::FromGrpcStatus(stub_->Register(&context, request, &response));
    if (s.ok()) {
      absl::Status assigned = absl::OkStatus();
      if (options_.on_assignments)
        assigned = options_.on_assignments(FromProto(response, identity_.vm));
      std::lock_guard<std::mutex> lock(mu_);
      if (!assigned.ok()) {
        status_ = assigned;
        cv_.notify_all();
        return false;
      }
      worker_id_ = response.worker_id();
      registered_ = true;
      cv_.notify_all();
      const double seconds = response.heartbeat_interval_seconds();
      *heartbeat_interval = seconds > 0 ? absl::Seconds(seconds) : absl::Seconds(1);
      return true;
    }
    if (!IsTransient(s.code())) {
      std::lock_guard<std::mutex> lock(mu_);
      status_ = absl::Status(
          s.code(), absl::StrCat("coordinator ", address_, " refused the registration of vm '",
                                 identity_.vm, "': ", s.message()));
      cv_.notify_all();
      return false;
    }
    if (!SleepUnlessStopped(backoff)) return false;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

void CoordinatorClient::Heartbeat(absl::Duration interval) {
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stream_context_ = &context;
  }
  std::unique_ptr<grpc::ClientReaderWriter<v1::Heartbeat, v1::HeartbeatAck>> stream =
      stub_->Heartbeats(&context);
  std::thread reader([&] {
    v1::HeartbeatAck ack;
    while (stream->Read(&ack)) {
      if (ack.drain() && options_.on_drain) options_.on_drain();
    }
  });
  const std::string worker_id = this->worker_id();
  // Counters count from this registration: to the coordinator each registration is a new worker,
  // and the tokens of an earlier one (declared dead, though this process lived on) were counted
  // under that one.
  absl::flat_hash_map<std::string, ReplicaCounters> since;
  if (options_.counters) {
    for (ReplicaCounters& c : options_.counters()) since[c.replica_id] = std::move(c);
  }
  while (true) {
    v1::Heartbeat heartbeat;
    heartbeat.set_worker_id(worker_id);
    if (options_.counters) {
      for (const ReplicaCounters& c : options_.counters()) {
        ToProto(c, since[c.replica_id], heartbeat.add_replicas());
      }
    }
    if (!stream->Write(heartbeat)) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++heartbeats_sent_;
    }
    if (!SleepUnlessStopped(interval)) break;
  }
  stream->WritesDone();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_context_ = nullptr;
    registered_ = false;
    if (stop_) context.TryCancel();
  }
  reader.join();
  stream->Finish();
  // Heartbeat returns to Run(), which registers again unless stopped; pause so that a
  // coordinator that keeps closing the stream is not hammered.
  SleepUnlessStopped(options_.initial_backoff);
}

}  // namespace rackserve::worker
