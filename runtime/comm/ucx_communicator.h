// The UCX Communicator: host-memory collectives and point-to-point among processes, over shared
// memory on one host and TCP (or RDMA, where UCX has it) between hosts.
//
// Connection: each rank publishes its UCP worker address through the Rendezvous, creates an
// endpoint to every peer from their addresses (out-of-band exchange, which is what lets UCX use
// shared memory), then exchanges one handshake message with every peer, so Create returns only
// once the whole group is wired.
//
// Collectives are written for small groups (2-8 ranks, up to a few dozen): every rank exchanges
// directly with every other. AllReduceSum adds in rank order, (((x0 + x1) + x2) + ...), for
// every element whatever the size: small buffers are gathered to rank 0, summed and broadcast;
// larger ones are reduce-scattered (rank r sums the r-th chunk of every rank) and all-gathered.
// A ring would move the same bytes but sum each chunk starting at a different rank; the direct
// exchange keeps one order, so the result does not depend on the algorithm or the size.
//
// Failure: a call waiting for a peer that died fails with UNAVAILABLE naming it. Peers on other
// hosts are watched by UCX (peer error handling and keepalive, UcxOptions::
// peer_failure_timeout); peers on this host by their pid (each rank publishes its pid and
// process namespace with its address), because UCX 1.13 offers shared memory only to endpoints
// without peer error handling. A rank whose communicator fails (a timeout, Abort, a dead peer)
// sends a notice to the others before tearing down its UCX resources (endpoints force-closed),
// so their calls fail too instead of timing out; a peer that closed its communicator normally
// is no failure for calls that do not wait for it. See communicator.h for the error contract; an
// Abort is seen (and the peers told) when the operating thread next waits in or enters the
// communicator, or destroys it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/comm/communicator.h"
#include "runtime/comm/rendezvous.h"
#include "runtime/comm/world_spec.h"

namespace rackserve::comm {

struct UcxOptions {
  // Per operation: a call (or Pending::Wait) not complete by then fails with DEADLINE_EXCEEDED.
  absl::Duration timeout = absl::Seconds(30);
  // The rendezvous plus the handshake with every peer, in CreateUcxCommunicator.
  absl::Duration connect_timeout = absl::Seconds(120);
  // UCX_TLS value; "" = UCX_TLS from the environment, else UCX's default (shm + tcp on one host).
  std::string transports = "";
  // A peer on another host that dies is reported (UNAVAILABLE) within about this long (it sets
  // UCX's keepalive interval). Peers on this host are watched through their pids (at once).
  absl::Duration peer_failure_timeout = absl::Seconds(3);
  // Whether peers on this host may use shared memory. UCX 1.13 offers shared memory only to
  // endpoints without UCX peer error handling, so such peers are watched through their pids
  // instead; false treats them like remote peers (TCP, UCX error handling and keepalive).
  bool shared_memory = true;
};

// Creates the UCP context and worker, exchanges worker addresses through `rendezvous`, connects
// endpoints to every peer and returns once the group is connected. Errors: those of
// Rendezvous::Exchange; INVALID_ARGUMENT for bad options; UCX failures converted by
// ucx_status.h; DEADLINE_EXCEEDED naming the peers that did not answer the handshake.
absl::StatusOr<std::unique_ptr<Communicator>> CreateUcxCommunicator(const WorldSpec& world,
                                                                    int rank,
                                                                    Rendezvous& rendezvous,
                                                                    const UcxOptions& options);

}  // namespace rackserve::comm
