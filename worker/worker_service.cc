#include "worker/worker_service.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proto/wire_conversion.h"
#include "worker/serve_session.h"

namespace rackserve::worker {
namespace {

// How often a blocked Submit handler checks whether its client went away.
constexpr auto kCancelPollInterval = std::chrono::milliseconds(50);

// How long the Serve handler waits for output before it checks whether the call was cancelled;
// while output flows, a cancelled call shows as a failed Write.
constexpr absl::Duration kServePollInterval = absl::Milliseconds(100);

// Chunks from the replica's step thread to the handler thread. Shared: the sink may outlive the
// handler (a cancelled client).
struct ChunkQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<TokenChunk> chunks;  // guarded by mu
};

v1::TokenChunk ToProto(const std::string& request_id, const TokenChunk& chunk) {
  v1::TokenChunk proto;
  proto.set_request_id(request_id);
  proto.mutable_token_ids()->Assign(chunk.token_ids.begin(), chunk.token_ids.end());
  proto.set_first_index(chunk.first_index);
  proto.set_finish_reason(wire::ToProto(chunk.finish));
  if (chunk.finish != sampling::FinishReason::kNone) proto.set_prompt_tokens(chunk.prompt_tokens);
  return proto;
}

// A failure this worker reports itself (see wire::kWorkerAnsweredMetadata).
grpc::Status AnsweredFailure(grpc::ServerContext* context, const absl::Status& status) {
  context->AddTrailingMetadata(wire::kWorkerAnsweredMetadata, "1");
  return wire::ToGrpcStatus(status);
}

}  // namespace

grpc::Status WorkerServiceImpl::Serve(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) {
  const std::shared_ptr<ServeSession> session = ServeSession::Create(registry_);
  // Read fails both on half-close and on a broken call; the handler tells them apart.
  std::thread reader([&] {
    v1::ServeInbound inbound;
    while (stream->Read(&inbound)) {
      for (const v1::ReplicaRequest& request : inbound.submit()) session->Submit(request);
      for (const uint64_t handle : inbound.cancel()) session->Cancel(handle);
    }
    session->CloseInput();
  });

  bool broken = false;
  v1::ServeOutbound outbound;  // reused: its fields' capacity carries over between batches
  absl::Time next_check = absl::Now() + kServePollInterval;
  while (!broken) {
    const ServeSession::TakeResult taken = session->Take(kServePollInterval, &outbound);
    if (taken == ServeSession::TakeResult::kDone) break;
    if (taken == ServeSession::TakeResult::kTaken && !stream->Write(outbound)) broken = true;
    if (!broken && absl::Now() >= next_check) {
      broken = context->IsCancelled();
      next_check = absl::Now() + kServePollInterval;
    }
  }
  if (broken) session->CancelAll();
  reader.join();
  if (broken) return grpc::Status(grpc::StatusCode::CANCELLED, "the Serve stream broke");
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Submit(grpc::ServerContext* context,
                                       const v1::ReplicaRequest* request,
                                       grpc::ServerWriter<v1::TokenChunk>* writer) {
  absl::StatusOr<ReplicaHost*> host = registry_->Find(request->replica_id());
  if (!host.ok()) return wire::ToGrpcStatus(host.status());
  absl::StatusOr<sampling::SamplingParams> params =
      wire::FromProto(request->sampling(), (*host)->model_config().vocab_size);
  if (!params.ok()) return wire::ToGrpcStatus(params.status());

  ReplicaRequest r;
  r.request_id = request->request_id();
  r.prompt.assign(request->prompt_token_ids().begin(), request->prompt_token_ids().end());
  r.sampling = *std::move(params);
  r.resume_tokens.assign(request->resume_token_ids().begin(), request->resume_token_ids().end());

  auto queue = std::make_shared<ChunkQueue>();
  const absl::StatusOr<SubmissionId> submission =
      (*host)->Submit(std::move(r), [queue](const TokenChunk& chunk) {
        {
          std::lock_guard<std::mutex> lock(queue->mu);
          queue->chunks.push_back(chunk);
        }
        queue->cv.notify_one();
      });
  if (!submission.ok()) return AnsweredFailure(context, submission.status());
  // Cancels this submission only: the request may have ended here and been resubmitted with the
  // same id (failover) before this handler notices its client went away. NOT_FOUND: it ended
  // meanwhile; its final chunk is in the queue.
  auto cancel = [&] { (*host)->Cancel(request->request_id(), *submission).IgnoreError(); };

  bool cancelled = false;
  while (true) {
    TokenChunk chunk;
    {
      std::unique_lock<std::mutex> lock(queue->mu);
      if (!queue->cv.wait_for(lock, kCancelPollInterval, [&] { return !queue->chunks.empty(); })) {
        lock.unlock();
        if (!cancelled && context->IsCancelled()) {
          cancelled = true;
          cancel();
        }
        continue;
      }
      chunk = std::move(queue->chunks.front());
      queue->chunks.pop_front();
    }
    // UNAVAILABLE when the replica failed or shut down: the coordinator fails the request over.
    if (!chunk.status.ok()) return AnsweredFailure(context, chunk.status);
    const bool last = chunk.finish != sampling::FinishReason::kNone;
    if (cancelled) {
      if (last) return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled");
      continue;
    }
    if (!writer->Write(ToProto(request->request_id(), chunk))) {
      // The client is gone: end the request and wait for its final chunk.
      cancelled = true;
      if (!last) cancel();
    }
    if (last) {
      return cancelled ? grpc::Status(grpc::StatusCode::CANCELLED, "the client went away")
                       : grpc::Status::OK;
    }
  }
}

grpc::Status WorkerServiceImpl::Cancel(grpc::ServerContext* /*context*/,
                                       const v1::ReplicaCancel* request,
                                       v1::CancelResponse* /*response*/) {
  absl::StatusOr<ReplicaHost*> host = registry_->Find(request->replica_id());
  if (!host.ok()) return wire::ToGrpcStatus(host.status());
  return wire::ToGrpcStatus((*host)->Cancel(request->request_id()));
}

grpc::Status WorkerServiceImpl::Drain(grpc::ServerContext* /*context*/,
                                      const v1::DrainRequest* /*request*/,
                                      v1::DrainResponse* response) {
  response->set_requests_left(registry_->DrainAll());
  return grpc::Status::OK;
}

}  // namespace rackserve::worker
