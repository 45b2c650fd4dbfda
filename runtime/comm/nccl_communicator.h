// The NCCL Communicator: collectives and point-to-point between GPU ranks (NVLink, PCIe or the
// network), on device memory: every float* / void* passed to it is a device pointer on the
// communicator's device.
//
// Connection: rank 0 makes the NCCL unique id and publishes it through the Rendezvous (the other
// ranks publish an empty blob); every rank then initializes a non-blocking NCCL communicator
// (ncclCommInitRankConfig with blocking = 0), polled until ready within connect_timeout.
//
// Execution: operations are enqueued in call order on one CUDA stream the communicator owns;
// blocking calls wait for their work on that stream, *Async calls return a Pending that does.
// Callers order their own kernels against the communicator with stream-level synchronization
// (the blocking calls return only once the transfer is complete on the device).
//
// Differences from the UCX communicator (NCCL semantics): a Send completes only when the peer
// posts the matching Recv (no buffering), so two ranks must not both block in Send to each
// other; a Recv whose size differs from the Send's is not detected (undefined, typically a
// timeout); AllReduceSum uses NCCL's algorithms, so the summation order is NCCL's, though every
// rank ends with the same values.
//
// Failure: a watchdog thread polls ncclCommGetAsyncError and aborts the NCCL communicator
// (ncclCommAbort, which also stops kernels stuck waiting for a dead peer) on an asynchronous
// error (UNAVAILABLE: a peer or the network failed), on Abort() (ABORTED) and when an operation
// passes its timeout (DEADLINE_EXCEEDED). The error contract is communicator.h's.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/comm/communicator.h"
#include "runtime/comm/rendezvous.h"
#include "runtime/comm/world_spec.h"

namespace rackserve::comm {

struct NcclOptions {
  // Per operation: not complete on the device by then -> DEADLINE_EXCEEDED (and abort).
  absl::Duration timeout = absl::Seconds(30);
  // The rendezvous plus NCCL initialization.
  absl::Duration connect_timeout = absl::Seconds(120);
  // How often the watchdog polls NCCL for asynchronous errors, timeouts and Abort().
  absl::Duration watchdog_interval = absl::Milliseconds(5);
};

// Creates the NCCL communicator for `rank` on CUDA device `device`. Errors: those of
// Rendezvous::Exchange; INVALID_ARGUMENT for a bad device or options; FAILED_PRECONDITION when
// rank 0 published no valid NCCL unique id; CUDA and NCCL failures converted at the boundary;
// DEADLINE_EXCEEDED when NCCL initialization does not finish within connect_timeout.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const WorldSpec& world,
                                                                     int rank, int device,
                                                                     Rendezvous& rendezvous,
                                                                     const NcclOptions& options);

}  // namespace rackserve::comm
