#include "runtime/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kernels/cuda/cuda_status.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/nccl_status.h"

namespace rackserve::comm {
namespace {

// How often host threads poll CUDA events and NCCL's state while waiting.
constexpr absl::Duration kPoll = absl::Microseconds(20);

// `what` ("count", "bytes") of `op` must be >= 0, with a buffer when > 0.
absl::Status CheckSize(std::string_view op, std::string_view what, int64_t n, const void* data) {
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": ", std::string(what), " ", n, " is negative"));
  }
  if (n > 0 && data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": null buffer for ", std::string(what), " ", n));
  }
  return absl::OkStatus();
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const WorldSpec& world, int rank, int device, const NcclOptions& options)
      : world_(world), rank_(rank), size_(world.size), device_(device), options_(options) {}

  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // Shares the unique id, initializes NCCL, creates the stream and starts the watchdog.
  absl::Status Init(Rendezvous& rendezvous);

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(float* data, int64_t count) override {
    RS_RETURN_IF_ERROR(CheckSize("AllReduceSum", "count", count, data));
    return Run("AllReduceSum", [&](ncclComm_t comm) {
      return ncclAllReduce(data, data, static_cast<size_t>(count), ncclFloat, ncclSum, comm,
                           stream_);
    });
  }

  absl::Status AllGather(const float* in, int64_t count, float* out) override {
    RS_RETURN_IF_ERROR(CheckSize("AllGather", "count", count, in));
    RS_RETURN_IF_ERROR(CheckSize("AllGather", "count", count, out));
    const auto address = [](const float* p) { return reinterpret_cast<uintptr_t>(p); };
    if (in != out + rank_ * count && address(in) < address(out + size_ * count) &&
        address(out) < address(in + count)) {
      return absl::InvalidArgumentError(
          "AllGather: `in` overlaps `out` other than at this rank's block");
    }
    return Run("AllGather", [&](ncclComm_t comm) {
      return ncclAllGather(in, out, static_cast<size_t>(count), ncclFloat, comm, stream_);
    });
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    RS_RETURN_IF_ERROR(CheckSize("Broadcast", "bytes", bytes, data));
    if (root < 0 || root >= size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast: root ", root, " is outside [0, ", size_, ")"));
    }
    return Run("Broadcast", [&](ncclComm_t comm) {
      return ncclBroadcast(data, data, static_cast<size_t>(bytes), ncclUint8, root, comm, stream_);
    });
  }

  absl::Status Send(const void* data, int64_t bytes, int peer) override {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Pending> pending, SendAsync(data, bytes, peer));
    return pending->Wait();
  }

  absl::Status Recv(void* data, int64_t bytes, int peer) override {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Pending> pending, RecvAsync(data, bytes, peer));
    return pending->Wait();
  }

  absl::Status Barrier() override {
    return Run("Barrier", [&](ncclComm_t comm) {
      return ncclAllReduce(barrier_scratch_, barrier_scratch_, 1, ncclFloat, ncclSum, comm,
                           stream_);
    });
  }

  absl::StatusOr<std::unique_ptr<Pending>> SendAsync(const void* data, int64_t bytes,
                                                     int peer) override {
    RS_RETURN_IF_ERROR(CheckSize("Send", "bytes", bytes, data));
    RS_RETURN_IF_ERROR(CheckPeer("Send", peer));
    return Start("Send", [&](ncclComm_t comm) {
      return ncclSend(data, static_cast<size_t>(bytes), ncclUint8, peer, comm, stream_);
    });
  }

  absl::StatusOr<std::unique_ptr<Pending>> RecvAsync(void* data, int64_t bytes, int peer) override {
    RS_RETURN_IF_ERROR(CheckSize("Recv", "bytes", bytes, data));
    RS_RETURN_IF_ERROR(CheckPeer("Recv", peer));
    return Start("Recv", [&](ncclComm_t comm) {
      return ncclRecv(data, static_cast<size_t>(bytes), ncclUint8, peer, comm, stream_);
    });
  }

  void Abort(const absl::Status& reason) override {
    absl::MutexLock lock(&state_mu_);
    if (!abort_requested_) {
      abort_requested_ = true;
      abort_reason_ = reason;
    }
  }

 private:
  class NcclPending;
  using Issue = std::function<ncclResult_t(ncclComm_t)>;

  absl::Status CheckPeer(std::string_view op, int peer) const {
    if (peer < 0 || peer >= size_ || peer == rank_) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(op), ": peer ", peer,
                                                     " is not another rank of [0, ", size_,
                                                     ") (this is rank ", rank_, ")"));
    }
    return absl::OkStatus();
  }

  // Enqueues `issue` and waits for it on the device.
  absl::Status Run(std::string_view op, const Issue& issue) {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Pending> pending, Start(op, issue));
    return pending->Wait();
  }
  // Enqueues `issue` on stream_ followed by an event the returned Pending waits for.
  absl::StatusOr<std::unique_ptr<Pending>> Start(std::string_view op, const Issue& issue);
  // Blocks until `event` has completed, the communicator failed or the timeout passed.
  absl::Status WaitEvent(cudaEvent_t event, std::string_view op);

  absl::Status failure() const {
    absl::MutexLock lock(&state_mu_);
    return failure_;
  }
  // The failure, failing first when Abort() was called and the watchdog has not acted yet.
  absl::Status CheckUsable() {
    absl::Status aborted;
    {
      absl::MutexLock lock(&state_mu_);
      if (!failure_.ok() || !abort_requested_) return failure_;
      aborted = AbortStatus();
    }
    return Fail(std::move(aborted));
  }
  absl::Status AbortStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_) {
    return absl::AbortedError(
        absl::StrCat("communicator aborted on rank ", rank_, ": ", abort_reason_.ToString()));
  }
  // Records `status` as the failure (the first one wins) and aborts the NCCL communicator,
  // which also ends kernels waiting for peers. Returns the recorded failure.
  absl::Status Fail(absl::Status status) {
    absl::MutexLock lock(&nccl_mu_);
    return FailLocked(std::move(status));
  }
  absl::Status FailLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(nccl_mu_);
  // Polls NCCL for asynchronous errors and enforces Abort() and wait deadlines.
  void WatchdogLoop();

  const WorldSpec world_;
  const int rank_;
  const int size_;
  const int device_;
  const NcclOptions options_;

  absl::Mutex nccl_mu_;                                  // serializes calls on comm_
  ncclComm_t comm_ ABSL_GUARDED_BY(nccl_mu_) = nullptr;  // null once aborted or destroyed
  cudaStream_t stream_ = nullptr;
  float* barrier_scratch_ = nullptr;  // one device float for Barrier

  mutable absl::Mutex state_mu_;
  absl::Status failure_ ABSL_GUARDED_BY(state_mu_);
  bool abort_requested_ ABSL_GUARDED_BY(state_mu_) = false;
  absl::Status abort_reason_ ABSL_GUARDED_BY(state_mu_);
  // The deadline of the wait in progress, and what it waits for.
  absl::Time wait_deadline_ ABSL_GUARDED_BY(state_mu_) = absl::InfiniteFuture();
  std::string wait_op_ ABSL_GUARDED_BY(state_mu_);
  bool stop_ ABSL_GUARDED_BY(state_mu_) = false;
  std::thread watchdog_;
};

// Waits for the event recorded after one enqueued operation; owns the event.
class NcclCommunicator::NcclPending final : public Communicator::Pending {
 public:
  NcclPending(NcclCommunicator* comm, cudaEvent_t event, std::string op)
      : comm_(comm), event_(event), op_(std::move(op)) {}
  ~NcclPending() override {
    if (!result_.has_value()) Wait().IgnoreError();
    cudaEventDestroy(event_);
  }

  absl::Status Wait() override {
    if (!result_.has_value()) result_ = comm_->WaitEvent(event_, op_);
    return *result_;
  }

 private:
  NcclCommunicator* const comm_;
  const cudaEvent_t event_;
  const std::string op_;
  std::optional<absl::Status> result_;
};

absl::Status NcclCommunicator::Init(Rendezvous& rendezvous) {
  RS_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  std::string blob;
  if (rank_ == 0) {
    ncclUniqueId id;
    RS_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
    blob.assign(id.internal, sizeof id.internal);
  }
  RS_ASSIGN_OR_RETURN(
      const std::vector<std::string> blobs,
      rendezvous.Exchange(world_, rank_, std::move(blob), options_.connect_timeout));
  ncclUniqueId id;
  if (blobs[0].size() != sizeof id.internal) {
    return absl::FailedPreconditionError(absl::StrCat("rank 0 published a ", blobs[0].size(),
                                                      "-byte blob, not a ", sizeof id.internal,
                                                      "-byte NCCL unique id"));
  }
  std::memcpy(id.internal, blobs[0].data(), sizeof id.internal);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  {
    absl::MutexLock lock(&nccl_mu_);
    ncclComm_t comm = nullptr;
    ncclResult_t result = ncclCommInitRankConfig(&comm, size_, id, rank_, &config);
    comm_ = comm;
    const absl::Time deadline = absl::Now() + options_.connect_timeout;
    while (result == ncclInProgress && comm_ != nullptr && absl::Now() < deadline) {
      absl::SleepFor(kPoll);
      if (ncclCommGetAsyncError(comm_, &result) != ncclSuccess) break;
    }
    if (result == ncclInProgress) {
      return FailLocked(absl::DeadlineExceededError(
          absl::StrCat("NCCL initialization of rank ", rank_, " of ", size_,
                       " did not finish within ", absl::FormatDuration(options_.connect_timeout))));
    }
    if (result != ncclSuccess) {
      return FailLocked(NcclStatus(result, "ncclCommInitRankConfig", __FILE__, __LINE__));
    }
  }
  RS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RS_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&barrier_scratch_), sizeof(float)));
  watchdog_ = std::thread([this] { WatchdogLoop(); });
  return absl::OkStatus();
}

NcclCommunicator::~NcclCommunicator() {
  {
    absl::MutexLock lock(&state_mu_);
    stop_ = true;
  }
  if (watchdog_.joinable()) watchdog_.join();
  {
    absl::MutexLock lock(&nccl_mu_);
    if (comm_ != nullptr) {
      // Healthy: finish the enqueued work, then free; an error on the way aborts instead.
      ncclResult_t result = ncclCommFinalize(comm_);
      const absl::Time deadline = absl::Now() + options_.timeout;
      while (result == ncclInProgress && absl::Now() < deadline) {
        absl::SleepFor(kPoll);
        if (ncclCommGetAsyncError(comm_, &result) != ncclSuccess) break;
      }
      if (result == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  if (barrier_scratch_ != nullptr) cudaFree(barrier_scratch_);
}

absl::StatusOr<std::unique_ptr<Communicator::Pending>> NcclCommunicator::Start(std::string_view op,
                                                                               const Issue& issue) {
  RS_RETURN_IF_ERROR(CheckUsable());
  cudaEvent_t event = nullptr;
  RS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  auto pending = std::make_unique<NcclPending>(this, event, std::string(op));
  {
    absl::MutexLock lock(&nccl_mu_);
    if (comm_ == nullptr) return failure();
    // A non-blocking communicator may return ncclInProgress: no other NCCL call on it until
    // its state leaves ncclInProgress.
    ncclResult_t result = issue(comm_);
    const absl::Time deadline = absl::Now() + options_.timeout;
    while (result == ncclInProgress && absl::Now() < deadline) {
      absl::SleepFor(kPoll);
      if (ncclCommGetAsyncError(comm_, &result) != ncclSuccess) break;
    }
    if (result == ncclInProgress) {
      return FailLocked(absl::DeadlineExceededError(
          absl::StrCat(std::string(op), " on rank ", rank_, " was not enqueued within ",
                       absl::FormatDuration(options_.timeout))));
    }
    if (result != ncclSuccess) {
      const std::string expr = absl::StrCat("nccl ", std::string(op));
      return FailLocked(NcclStatus(result, expr.c_str(), __FILE__, __LINE__));
    }
  }
  const cudaError_t recorded = cudaEventRecord(event, stream_);
  if (recorded != cudaSuccess) {
    return Fail(
        kernels::cuda::CudaStatus(recorded, "cudaEventRecord(event, stream_)", __FILE__, __LINE__));
  }
  return pending;
}

absl::Status NcclCommunicator::WaitEvent(cudaEvent_t event, std::string_view op) {
  {
    absl::MutexLock lock(&state_mu_);
    wait_deadline_ = absl::Now() + options_.timeout;
    wait_op_ = std::string(op);
  }
  absl::Status status;
  for (;;) {
    const cudaError_t query = cudaEventQuery(event);
    if (query == cudaSuccess) break;
    if (query != cudaErrorNotReady) {
      status = Fail(kernels::cuda::CudaStatus(query, "cudaEventQuery(event)", __FILE__, __LINE__));
      break;
    }
    status = failure();  // set by the watchdog: an async error, Abort() or the deadline
    if (!status.ok()) break;
    absl::SleepFor(kPoll);
  }
  absl::MutexLock lock(&state_mu_);
  wait_deadline_ = absl::InfiniteFuture();
  return status;
}

absl::Status NcclCommunicator::FailLocked(absl::Status status) {
  {
    absl::MutexLock lock(&state_mu_);
    if (!failure_.ok()) return failure_;
    failure_ = std::move(status);
  }
  if (comm_ != nullptr) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  absl::MutexLock lock(&state_mu_);
  return failure_;
}

void NcclCommunicator::WatchdogLoop() {
  cudaSetDevice(device_);
  for (;;) {
    absl::Status failure;
    {
      absl::MutexLock lock(&state_mu_);
      if (stop_ || !failure_.ok()) return;
      if (abort_requested_) {
        failure = AbortStatus();
      } else if (absl::Now() > wait_deadline_) {
        failure = absl::DeadlineExceededError(absl::StrCat(wait_op_, " on rank ", rank_,
                                                           " did not complete within ",
                                                           absl::FormatDuration(options_.timeout)));
      }
    }
    {
      absl::MutexLock lock(&nccl_mu_);
      if (failure.ok() && comm_ != nullptr) {
        ncclResult_t async_error = ncclSuccess;
        const ncclResult_t queried = ncclCommGetAsyncError(comm_, &async_error);
        if (queried != ncclSuccess) {
          failure = NcclStatus(queried, "ncclCommGetAsyncError", __FILE__, __LINE__);
        } else if (async_error != ncclSuccess && async_error != ncclInProgress) {
          failure = absl::Status(
              NcclStatus(async_error, "NCCL", __FILE__, __LINE__).code(),
              absl::StrCat("NCCL failed asynchronously on rank ", rank_,
                           " (a peer or the "
                           "network failed): ",
                           ncclGetErrorString(async_error), ": ", ncclGetLastError(comm_)));
        }
      }
      if (!failure.ok()) {
        FailLocked(failure).IgnoreError();
        return;
      }
    }
    absl::SleepFor(options_.watchdog_interval);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const WorldSpec& world,
                                                                     int rank, int device,
                                                                     Rendezvous& rendezvous,
                                                                     const NcclOptions& options) {
  RS_RETURN_IF_ERROR(world.Validate());
  RS_RETURN_IF_ERROR(world.ValidateRank(rank));
  if (device < 0) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA device ", device, " is negative"));
  }
  for (auto [name, value] : {std::pair<const char*, absl::Duration>{"timeout", options.timeout},
                             {"connect_timeout", options.connect_timeout},
                             {"watchdog_interval", options.watchdog_interval}}) {
    if (value <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("NcclOptions.", name, " ", absl::FormatDuration(value), " is not positive"));
    }
  }
  auto comm = std::make_unique<NcclCommunicator>(world, rank, device, options);
  RS_RETURN_IF_ERROR(comm->Init(rendezvous));
  return comm;
}

}  // namespace rackserve::comm
