#include "coordinator/worker_link.h"

#include <utility>

#include "proto/wire_conversion.h"
#include "runtime/base/thread_name.h"

namespace rackserve::coordinator {
namespace {

// Most bytes of submissions sent in one ServeInbound (prompts can be long); the rest waits for
// the next Write. Well under gRPC's default 4 MiB message limit.
constexpr size_t kMaxInboundBytes = 1 << 20;
// How long the reader waits for the writer to notice the call ended before cancelling it.
constexpr absl::Duration kWriterGrace = absl::Seconds(1);

bool HasWork(const v1::ServeInbound& inbound) {
  return inbound.submit_size() > 0 || inbound.cancel_size() > 0;
}

}  // namespace

WorkerLink::WorkerLink(std::string worker_id, const std::shared_ptr<grpc::Channel>& channel,
                       Receiver* receiver)
    : worker_id_(std::move(worker_id)),
      receiver_(receiver),
      stub_(v1::WorkerService::NewStub(channel)),
      reader_([this] { ReadLoop(); }) {}

WorkerLink::~WorkerLink() {
  Close();
  if (reader_.joinable()) reader_.join();
}

void WorkerLink::Submit(v1::ReplicaRequest request) {
  absl::MutexLock lock(&mutex_);
  if (broken_) return;
  *pending_.add_submit() = std::move(request);
}

void WorkerLink::Cancel(uint64_t handle) {
  absl::MutexLock lock(&mutex_);
  if (broken_) return;
  pending_.add_cancel(handle);
}

void WorkerLink::Close() {
  absl::MutexLock lock(&mutex_);
  broken_ = true;
  context_.TryCancel();
}

void WorkerLink::WriteLoop() {
  base::NameThisThread("link-write");
  while (true) {
    v1::ServeInbound batch;
    {
      absl::MutexLock lock(&mutex_);
      mutex_.Await(absl::Condition(
          +[](WorkerLink* self) {
            self->mutex_.AssertHeld();
            return self->broken_ || HasWork(self->pending_);
          },
          this));
      if (broken_) break;
      if (pending_.ByteSizeLong() <= kMaxInboundBytes) {
        batch.Swap(&pending_);
      } else {
        // Cancels first (they are small and urgent), then submissions up to the byte limit.
        batch.mutable_cancel()->Swap(pending_.mutable_cancel());
        size_t bytes = 0;
        int taken = 0;
        while (taken < pending_.submit_size() &&
               (taken == 0 || bytes + pending_.submit(taken).ByteSizeLong() <= kMaxInboundBytes)) {
          bytes += pending_.submit(taken).ByteSizeLong();
          ++taken;
        }
        auto* from = pending_.mutable_submit();
        for (int i = 0; i < taken; ++i) batch.add_submit()->Swap(from->Mutable(i));
        from->DeleteSubrange(0, taken);
      }
    }
    if (!stream_->Write(batch)) break;
  }
  absl::MutexLock lock(&mutex_);
  broken_ = true;
  writer_done_ = true;
}

void WorkerLink::ReadLoop() {
  base::NameThisThread("link-read");
  stream_ = stub_->Serve(&context_);
  writer_ = std::thread([this] { WriteLoop(); });
  v1::ServeOutbound outbound;
  while (stream_->Read(&outbound)) receiver_->OnOutbound(this, outbound);
  {
    // Read fails only once the call is over, and then a Write in flight fails by itself.
    // Cancelling at once would replace the worker's status (the reason the link broke) with
    // CANCELLED: only a writer still stuck after kWriterGrace is cancelled out of its Write.
    absl::MutexLock lock(&mutex_);
    broken_ = true;
    if (!mutex_.AwaitWithTimeout(absl::Condition(&writer_done_), kWriterGrace)) {
      context_.TryCancel();
      mutex_.Await(absl::Condition(&writer_done_));
    }
  }
  writer_.join();
  const grpc::Status status = stream_->Finish();
  receiver_->OnLinkBroken(
      this, status.ok() ? absl::UnavailableError("the worker ended the stream")
                        : wire::FromGrpcStatus(status));
}

}  // namespace rackserve::coordinator
