#include "worker/worker_service.h"

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/time/clock.h"
#include "runtime/base/status_macros.h"
#include "runtime/base/thread_name.h"
#include "worker/serve_session.h"

namespace rackserve::worker {
namespace {

// How long the Serve handler waits for output, or for its flush interval to pass, before it
// checks whether the call was cancelled; while output flows, a cancelled call shows as a failed
// Write.
constexpr absl::Duration kServePollInterval = absl::Milliseconds(100);

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(ReplicaRegistry* registry, absl::Duration flush_interval)
    : registry_(registry), flush_interval_(flush_interval) {
  RS_CHECK(flush_interval >= absl::ZeroDuration());
}

grpc::Status WorkerServiceImpl::Serve(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::ServeOutbound, v1::ServeInbound>* stream) {
  const std::shared_ptr<ServeSession> session = ServeSession::Create(registry_);
  // Read fails both on half-close and on a broken call; the handler tells them apart.
  std::thread reader([&] {
    base::NameThisThread("serve-read");
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
  absl::Time next_write = absl::InfinitePast();  // the last Write's start + flush_interval_
  while (!broken) {
    const absl::Time now = absl::Now();
    if (now < next_write) {
      // Too soon after the last Write: let the outbox fill.
      absl::SleepFor(std::min(next_write, next_check) - now);
    } else {
      const ServeSession::TakeResult taken = session->Take(kServePollInterval, &outbound);
      if (taken == ServeSession::TakeResult::kDone) break;
      if (taken == ServeSession::TakeResult::kTaken) {
        next_write = absl::Now() + flush_interval_;
        broken = !stream->Write(outbound);
      }
    }
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

grpc::Status WorkerServiceImpl::Drain(grpc::ServerContext* /*context*/,
                                      const v1::DrainRequest* /*request*/,
                                      v1::DrainResponse* response) {
  response->set_requests_left(registry_->DrainAll());
  return grpc::Status::OK;
}

}  // namespace rackserve::worker
