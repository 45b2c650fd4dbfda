// Communicator: collective and point-to-point communication among the ranks of one group, on
// host memory (UCX, ucx_communicator.h) or device memory (NCCL, nccl_communicator.h).
//
// Ordering: collectives must be called by every rank of the group in the same order with the
// same sizes (and root). Messages between one pair of ranks are received in the order they were
// sent; collectives and point-to-point messages never match each other.
//
// Blocking: every call blocks until its transfer is complete (the buffer may be reused) or the
// communicator's timeout passes, except SendAsync / RecvAsync, whose Pending::Wait blocks.
//
// Errors (what the caller should do):
//   INVALID_ARGUMENT     a bad argument (negative size, rank or root outside [0, size), a Recv
//                        whose size differs from the matching Send's); nothing was transferred
//                        for bad sizes/ranks; the communicator stays usable after a p2p size
//                        mismatch but not after a collective's.
//   UNAVAILABLE          a peer died, disconnected or failed; names the peer rank.
//   DEADLINE_EXCEEDED    the operation did not complete within the timeout.
//   ABORTED              Abort() was called; carries its reason.
// Apart from bad arguments caught before any transfer and a p2p size mismatch, an error fails
// the communicator for good: every later call returns the same error at once, and the group
// must be rebuilt. Implementations say how the peers of a failing rank learn of it.
//
// Thread-safety: one thread issues operations (including Pending::Wait); Abort() may be called
// from any thread at any time. Pending objects must not outlive their communicator.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rackserve::comm {

class Communicator {
 public:
  // An asynchronous transfer in flight. Its buffer must stay valid until Wait() returns (the
  // destructor waits when Wait() was not called).
  class Pending {
   public:
    virtual ~Pending() = default;
    // Blocks until the transfer is complete, at most the communicator's timeout from this call.
    // Returns the transfer's result; a second call returns the same result.
    virtual absl::Status Wait() = 0;
  };

  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: data[count] becomes the elementwise sum over all ranks. Every rank ends with
  // bitwise-identical values (one summation order for the whole group).
  virtual absl::Status AllReduceSum(float* data, int64_t count) = 0;
  // out[size * count]: rank r's in[count] at out + r * count. `in` may be out + rank() * count
  // (in place); any other overlap of `in` and `out` is INVALID_ARGUMENT.
  virtual absl::Status AllGather(const float* in, int64_t count, float* out) = 0;
  // Copies root's data[bytes] to every rank's data.
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;
  // Sends data[bytes] to `peer` (!= rank()).
  virtual absl::Status Send(const void* data, int64_t bytes, int peer) = 0;
  // Receives exactly `bytes` from `peer`'s next Send; INVALID_ARGUMENT naming the sizes when
  // the Send's size differs (where the implementation can tell; NCCL cannot).
  virtual absl::Status Recv(void* data, int64_t bytes, int peer) = 0;
  // Returns once every rank has entered the barrier.
  virtual absl::Status Barrier() = 0;

  // Asynchronous point-to-point, for pipeline stages that overlap compute and transfer. Ordered
  // with the blocking Send/Recv of the same pair.
  virtual absl::StatusOr<std::unique_ptr<Pending>> SendAsync(const void* data, int64_t bytes,
                                                             int peer) = 0;
  virtual absl::StatusOr<std::unique_ptr<Pending>> RecvAsync(void* data, int64_t bytes,
                                                             int peer) = 0;

  // Fails the communicator with ABORTED carrying `reason` (unless it already failed): a blocked
  // call returns promptly, later calls fail at once, and the peers are told. Any thread.
  virtual void Abort(const absl::Status& reason) = 0;
};

}  // namespace rackserve::comm
