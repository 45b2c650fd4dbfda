#include "client/direct_workers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace rackserve::client {

absl::StatusOr<std::unique_ptr<DirectWorkers>> DirectWorkers::Connect(
    const v1::Topology& topology) {
  std::unique_ptr<DirectWorkers> out(new DirectWorkers());
  absl::flat_hash_map<std::string, Worker*> by_vm;
  for (const v1::Vm& vm : topology.vms()) {
    if (vm.address().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("vm ", vm.name(), " has no worker (state ", vm.state(), ")"));
    }
    auto worker = std::make_unique<Worker>();
    worker->vm = vm.name();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    worker->stub = v1::WorkerService::NewStub(
        grpc::CreateCustomChannel(vm.address(), grpc::InsecureChannelCredentials(), args));
    by_vm[vm.name()] = worker.get();
    out->workers_.push_back(std::move(worker));
  }
  for (const v1::Replica& replica : topology.replicas()) {
    if (replica.ranks_size() != 1) continue;
    out->replicas_.push_back({replica.id(), by_vm.at(replica.ranks(0).vm()), 0});
  }
  if (out->replicas_.empty()) {
    return absl::FailedPreconditionError("no replica of the topology runs on a single rank");
  }
  out->readers_left_ = static_cast<int64_t>(out->workers_.size());
  for (const std::unique_ptr<Worker>& worker : out->workers_) {
    worker->stream = worker->stub->Serve(&worker->context);
    worker->reader = std::thread([self = out.get(), w = worker.get()] { self->ReadLoop(w); });
  }
  return out;
}

DirectWorkers::~DirectWorkers() {
  for (const std::unique_ptr<Worker>& worker : workers_) {
    worker->context.TryCancel();
    if (worker->reader.joinable()) worker->reader.join();
  }
}

bool DirectWorkers::Send(size_t sample, const v1::GenerateRequest& request) {
  v1::ServeInbound inbound;
  v1::ReplicaRequest* submit = inbound.add_submit();
  Worker* worker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!broken_.ok()) return false;
    auto least = std::min_element(
        replicas_.begin(), replicas_.end(),
        [](const Replica& a, const Replica& b) { return a.in_flight < b.in_flight; });
    ++least->in_flight;
    const uint64_t handle = next_handle_++;
    submissions_[handle] = {sample, static_cast<size_t>(least - replicas_.begin()), 0};
    worker = least->worker;
    submit->set_handle(handle);
    submit->set_replica_id(least->id);
  }
  submit->set_request_id(request.request_id());
  *submit->mutable_prompt_token_ids() = request.prompt_token_ids();
  *submit->mutable_sampling() = request.sampling();
  submit->set_deliver_at_end(true);  // as the coordinator asks for SubmitBatch's requests
  std::lock_guard<std::mutex> lock(worker->write_mu);
  return worker->stream->Write(inbound);
}

void DirectWorkers::DoneSending() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_sending_ = true;
  }
  changed_.notify_all();
}

void DirectWorkers::EndLocked(uint64_t handle, const std::string& error) {
  auto it = submissions_.find(handle);
  if (it == submissions_.end()) return;
  SampleEvent event;
  event.sample = it->second.sample;
  event.output_tokens = it->second.tokens;
  event.completed = error.empty();
  event.error = error;
  --replicas_[it->second.replica].in_flight;
  submissions_.erase(it);
  events_.push_back(std::move(event));
}

void DirectWorkers::ReadLoop(Worker* worker) {
  v1::ServeOutbound outbound;
  while (worker->stream->Read(&outbound)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 0; i < outbound.handles_size() && i < outbound.counts_size(); ++i) {
        auto it = submissions_.find(outbound.handles(i));
        if (it == submissions_.end()) continue;
        if (it->second.tokens == 0 && outbound.counts(i) > 0) {
          SampleEvent event;
          event.sample = it->second.sample;
          event.first_token = true;
          events_.push_back(event);
        }
        it->second.tokens += outbound.counts(i);
      }
      for (const v1::SubmissionEnd& end : outbound.ends()) {
        EndLocked(end.handle(), end.error_code() == 0
                                    ? std::string()
                                    : absl::StrCat("worker ", worker->vm, ": ",
                                                   end.error_message()));
      }
    }
    changed_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  --readers_left_;
  if (!done_sending_ || !submissions_.empty()) {
    // The stream ended before its work did: whatever still ran on it is lost.
    if (broken_.ok()) {
      broken_ = absl::UnavailableError(
          absl::StrCat("the Serve stream of worker ", worker->vm, " broke"));
    }
    std::vector<uint64_t> lost;
    for (const auto& [handle, submission] : submissions_) {
      if (replicas_[submission.replica].worker == worker) lost.push_back(handle);
    }
    for (uint64_t handle : lost) EndLocked(handle, broken_.ToString());
  }
  changed_.notify_all();
}

bool DirectWorkers::Next(SampleEvent* event) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] {
    return !events_.empty() || readers_left_ == 0 ||
           (done_sending_ && submissions_.empty());
  });
  if (events_.empty()) return false;
  *event = std::move(events_.front());
  events_.pop_front();
  return true;
}

absl::Status DirectWorkers::Finish() {
  for (const std::unique_ptr<Worker>& worker : workers_) {
    std::lock_guard<std::mutex> lock(worker->write_mu);
    worker->stream->WritesDone();
  }
  for (const std::unique_ptr<Worker>& worker : workers_) {
    if (worker->reader.joinable()) worker->reader.join();
    worker->stream->Finish().IgnoreError();
  }
  std::lock_guard<std::mutex> lock(mu_);
  return broken_;
}

}  // namespace rackserve::client
