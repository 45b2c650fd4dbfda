#include "worker/serve_session.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/wire_conversion.h"
#include "runtime/base/status_macros.h"

namespace rackserve::worker {
namespace {

void SetError(const absl::Status& status, v1::SubmissionEnd* end) {
  end->set_error_code(static_cast<int32_t>(status.code()));
  end->set_error_message(std::string(status.message()));
}

}  // namespace

std::shared_ptr<ServeSession> ServeSession::Create(ReplicaRegistry* registry) {
  return std::shared_ptr<ServeSession>(new ServeSession(registry));
}

void ServeSession::Submit(const v1::ReplicaRequest& request) {
  const uint64_t handle = request.handle();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (flights_.contains(handle)) {
      AddErrorEnd(handle, absl::InvalidArgumentError(absl::StrCat(
                              "handle: ", handle, " is already in flight on this stream (request '",
                              std::string(request.request_id()), "' not submitted)")));
      return;
    }
    if (broken_) {
      AddErrorEnd(handle, absl::UnavailableError(absl::StrCat(
                              "request '", std::string(request.request_id()), "' (handle ", handle,
                              "): the Serve stream broke before it was submitted")));
      return;
    }
    flights_.emplace(handle, Flight{});
  }
  const absl::Status status = SubmitToHost(handle, request);
  if (status.ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  flights_.erase(handle);
  AddErrorEnd(handle, status);
}

absl::Status ServeSession::SubmitToHost(uint64_t handle, const v1::ReplicaRequest& request) {
  RS_ASSIGN_OR_RETURN(ReplicaHost * host, registry_->Find(request.replica_id()));
  RS_ASSIGN_OR_RETURN(sampling::SamplingParams params,
                      wire::FromProto(request.sampling(), host->model_config().vocab_size));
  ReplicaRequest r;
  r.request_id = request.request_id();
  r.prompt.assign(request.prompt_token_ids().begin(), request.prompt_token_ids().end());
  r.sampling = std::move(params);
  r.resume_tokens.assign(request.resume_token_ids().begin(), request.resume_token_ids().end());
  r.deliver_at_end = request.deliver_at_end();
  // The session is the submission's StepSink; the host holds it until the final chunk.
  RS_ASSIGN_OR_RETURN(const SubmissionId submission,
                      host->Submit(std::move(r), shared_from_this(), handle));

  Flight flight{host, request.request_id(), submission};
  bool cancel_now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Absent when the submission already ended (its end is in the outbox).
    auto it = flights_.find(handle);
    if (it != flights_.end()) {
      it->second = flight;
      cancel_now = broken_;
    }
  }
  // CancelAll() ran while the host was accepting it, and could not cancel it yet.
  if (cancel_now) host->Cancel(flight.request_id, flight.submission).IgnoreError();
  return absl::OkStatus();
}

void ServeSession::Cancel(uint64_t handle) {
  Flight flight;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flights_.find(handle);
    if (it == flights_.end() || it->second.host == nullptr) return;
    flight = it->second;
  }
  // NOT_FOUND: it ended meanwhile; its end is in the outbox.
  flight.host->Cancel(flight.request_id, flight.submission).IgnoreError();
}

void ServeSession::CloseInput() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    input_closed_ = true;
  }
  outbox_ready_.notify_all();
}

void ServeSession::CancelAll() {
  std::vector<Flight> submitted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
    input_closed_ = true;
    submitted.reserve(flights_.size());
    for (const auto& [handle, flight] : flights_) {
      if (flight.host != nullptr) submitted.push_back(flight);
    }
  }
  outbox_ready_.notify_all();
  for (const Flight& flight : submitted) {
    flight.host->Cancel(flight.request_id, flight.submission).IgnoreError();
  }
}

ServeSession::TakeResult ServeSession::Take(absl::Duration timeout, v1::ServeOutbound* out) {
  out->Clear();
  std::unique_lock<std::mutex> lock(mu_);
  const bool ready = outbox_ready_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] {
    return !OutboxEmpty() || (input_closed_ && flights_.empty());
  });
  if (!ready) return TakeResult::kTimedOut;
  if (OutboxEmpty()) return TakeResult::kDone;
  // Both messages live on the heap: Swap exchanges the fields' buffers, and `out`'s cleared
  // buffers become the outbox's, capacity included.
  outbox_.Swap(out);
  return TakeResult::kTaken;
}

void ServeSession::DeliverStep(std::span<const ChunkView> chunks) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const bool was_empty = OutboxEmpty();
    for (const ChunkView& chunk : chunks) AppendLocked(chunk);
    wake = was_empty && !OutboxEmpty();
  }
  if (wake) outbox_ready_.notify_one();
}

void ServeSession::AppendLocked(const ChunkView& chunk) {
  const uint64_t handle = chunk.tag;
  if (!chunk.token_ids.empty()) {
    const auto count = static_cast<uint32_t>(chunk.token_ids.size());
    google::protobuf::RepeatedField<uint64_t>& handles = *outbox_.mutable_handles();
    google::protobuf::RepeatedField<uint32_t>& counts = *outbox_.mutable_counts();
    if (!handles.empty() && handles[handles.size() - 1] == handle) {
      counts[counts.size() - 1] += count;
    } else {
      handles.Add(handle);
      counts.Add(count);
    }
    google::protobuf::RepeatedField<int32_t>& token_ids = *outbox_.mutable_token_ids();
    if (count == 1) {
      token_ids.Add(chunk.token_ids[0]);
    } else {
      token_ids.Add(chunk.token_ids.begin(), chunk.token_ids.end());
    }
  }
  if (chunk.finish != sampling::FinishReason::kNone) {
    RS_CHECK(flights_.erase(handle) == 1);
    v1::SubmissionEnd* end = outbox_.add_ends();
    end->set_handle(handle);
    if (chunk.status.ok()) {
      end->set_finish_reason(wire::ToProto(chunk.finish));
      end->set_prompt_tokens(chunk.prompt_tokens);
    } else {
      SetError(chunk.status, end);
    }
  }
}

int64_t ServeSession::submissions_in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(flights_.size());
}

void ServeSession::AddErrorEnd(uint64_t handle, const absl::Status& status) {
  const bool was_empty = OutboxEmpty();
  v1::SubmissionEnd* end = outbox_.add_ends();
  end->set_handle(handle);
  SetError(status, end);
  if (was_empty) outbox_ready_.notify_one();
}

bool ServeSession::OutboxEmpty() const {
  return outbox_.handles().empty() && outbox_.ends().empty();
}

}  // namespace rackserve::worker
