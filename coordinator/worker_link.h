// WorkerLink: the coordinator's end of one worker's data path — a single WorkerService.Serve
// stream that carries every request the coordinator runs on the worker, both ways, in batches.
//
// Submit() and Cancel() only queue: a writer thread sends everything queued since its last Write
// as one ServeInbound (while a Write is in flight, more piles up). A reader thread hands each
// ServeOutbound to the receiver as it arrives. When the stream ends for any reason (the worker
// died, restarted, shut down, or Close()), the receiver hears OnLinkBroken exactly once, after
// the last OnOutbound; Submit() and Cancel() are then no-ops. A link is never reopened: the
// owner makes a new one.
//
// Thread-safe. The receiver must outlive the link; its callbacks run on the reader thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "rackserve/v1/worker.grpc.pb.h"

namespace rackserve::coordinator {

class WorkerLink {
 public:
  class Receiver {
   public:
    virtual ~Receiver() = default;
    // One message from the worker `link` talks to.
    virtual void OnOutbound(WorkerLink* link, const v1::ServeOutbound& outbound) = 0;
    // The stream ended; `status` says why. Nothing sent on the link after this reaches anyone.
    virtual void OnLinkBroken(WorkerLink* link, const absl::Status& status) = 0;
  };

  // Opens the stream on `channel` and starts the reader and writer threads.
  WorkerLink(std::string worker_id, const std::shared_ptr<grpc::Channel>& channel,
             Receiver* receiver);
  // Closes the stream and joins both threads (OnLinkBroken has run when it returns).
  ~WorkerLink();
  WorkerLink(const WorkerLink&) = delete;
  WorkerLink& operator=(const WorkerLink&) = delete;

  const std::string& worker_id() const { return worker_id_; }

  void Submit(v1::ReplicaRequest request);
  void Cancel(uint64_t handle);
  // Ends the stream now (the worker cancels what still runs on it). Idempotent.
  void Close();

 private:
  void WriteLoop();
  void ReadLoop();

  const std::string worker_id_;
  Receiver* const receiver_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ServeInbound, v1::ServeOutbound>> stream_;

  absl::Mutex mutex_;
  v1::ServeInbound pending_ ABSL_GUARDED_BY(mutex_);
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;  // no more writes: the stream ended or closes
  bool writer_done_ ABSL_GUARDED_BY(mutex_) = false;

  std::thread writer_;
  std::thread reader_;  // last: starts after every member is ready
};

}  // namespace rackserve::coordinator
