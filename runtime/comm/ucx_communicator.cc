#include "runtime/comm/ucx_communicator.h"

#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/internal/message_tag.h"
#include "runtime/comm/internal/process_watch.h"
#include "runtime/comm/ucx_status.h"

namespace rackserve::comm {
namespace {

using internal::CollectiveTag;
using internal::ControlTag;
using internal::kTagFullMask;
using internal::PointToPointTag;
using internal::ProcessWatch;

// AllReduceSum buffers up to this size are gathered to rank 0, summed there and broadcast.
constexpr int64_t kSmallAllReduceBytes = 32 << 10;
// The largest failure notice a rank sends its peers (longer texts are cut).
constexpr size_t kNoticeBytes = 512;
// After failing, how long a rank keeps progressing so its notices leave.
constexpr absl::Duration kNoticeGrace = absl::Milliseconds(200);
// How long teardown waits for closing endpoints and cancelled transfers before it destroys the
// worker regardless: a graceful close flushes, a forced one (after a failure) only collects
// cancellations (a rendezvous send to a dead shared-memory peer never completes).
constexpr absl::Duration kCloseGrace = absl::Seconds(2);
constexpr absl::Duration kForceCloseGrace = absl::Milliseconds(100);
// Wait loops progress the worker this many idle rounds before yielding the CPU, then this many
// before sleeping kIdleSleep per round (ranks often outnumber cores).
constexpr int kSpinRounds = 64;
constexpr int kYieldRounds = 2048;
constexpr absl::Duration kIdleSleep = absl::Microseconds(50);
// Waits look for exited peer processes every this many idle rounds (a syscall per peer).
constexpr int kProcessCheckRounds = 32;
// The handshake message: magic ("rscomm" + protocol version), sender rank.
constexpr uint64_t kHandshakeMagic = 0x7273636f6d6d0000 | WorldSpec::kProtocolVersion;
// The blob each rank publishes: "rscomm1 <pid> <process namespace>\n" then its UCX worker
// address (binary).
constexpr char kBlobMagic[] = "rscomm1";

// What a rank publishes besides its UCX address, so peers on the same host can watch its pid.
struct RankIdentity {
  pid_t pid = 0;
  std::string process_namespace;  // internal::LocalProcessNamespace(); may be empty
  std::string address;            // UCX worker address
};

std::string EncodeBlob(const RankIdentity& id) {
  return absl::StrCat(kBlobMagic, " ", id.pid, " ", id.process_namespace, "\n", id.address);
}

absl::StatusOr<RankIdentity> DecodeBlob(const std::string& blob, int rank) {
  const size_t newline = blob.find('\n');
  const std::vector<std::string> fields =
      absl::StrSplit(blob.substr(0, std::min(newline, blob.size())), ' ');
  RankIdentity id;
  int pid = 0;
  if (newline == std::string::npos || fields.size() != 3 || fields[0] != kBlobMagic ||
      !absl::SimpleAtoi(fields[1], &pid) || newline + 1 == blob.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rank ", rank, " published no UCX communicator identity: it runs another protocol"));
  }
  id.pid = pid;
  id.process_namespace = fields[2];
  id.address = blob.substr(newline + 1);
  return id;
}

struct ConfigDeleter {
  void operator()(ucp_config_t* config) const { ucp_config_release(config); }
};
struct ContextDeleter {
  void operator()(ucp_context* context) const { ucp_cleanup(context); }
};
struct WorkerDeleter {
  void operator()(ucp_worker* worker) const { ucp_worker_destroy(worker); }
};

// One posted tag send or receive. Must stay at one address while its request is in flight.
struct Transfer {
  void* request = nullptr;  // the UCX request while in flight
  int peer = -1;
  bool is_recv = false;
  bool collective = false;  // a size mismatch breaks the group (not just this call)
  int64_t bytes = 0;
  ucp_tag_recv_info_t info{};
  bool done = false;
  absl::Status result;  // once done
};

// A receive a collective phase posts, or a send it makes.
struct RecvSpec {
  int peer;
  void* data;
  int64_t bytes;
};
struct SendSpec {
  int peer;
  const void* data;
  int64_t bytes;
};

// Rank r's chunk of an n-way split of count elements is [ChunkBegin(r), ChunkBegin(r + 1)).
int64_t ChunkBegin(int64_t count, int n, int r) {
  return count / n * r + std::min<int64_t>(r, count % n);
}

absl::Status CheckCount(std::string_view op, int64_t count, const void* data) {
  if (count < 0 || count > INT64_MAX / static_cast<int64_t>(sizeof(float))) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": count ", count, " is negative or too large"));
  }
  if (count > 0 && data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": null buffer for ", count, " elements"));
  }
  return absl::OkStatus();
}

absl::Status CheckBytes(std::string_view op, int64_t bytes, const void* data) {
  if (bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": bytes ", bytes, " is negative"));
  }
  if (bytes > 0 && data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(op), ": null buffer for ", bytes, " bytes"));
  }
  return absl::OkStatus();
}

class UcxCommunicator final : public Communicator {
 public:
  UcxCommunicator(const WorldSpec& world, int rank, const UcxOptions& options)
      : world_(world), rank_(rank), size_(world.size), options_(options), peers_(world.size) {
    for (int p = 0; p < size_; ++p) peers_[p].rank = p;
  }

  ~UcxCommunicator() override {
    RS_CHECK(in_flight_.empty());  // else a Pending outlived its communicator
    if (failure_.ok() && abort_requested_.load(std::memory_order_acquire)) {
      FailOnAbort().IgnoreError();  // tells the peers
    }
    if (worker_ != nullptr) Teardown(/*force=*/false);
  }

  UcxCommunicator(const UcxCommunicator&) = delete;
  UcxCommunicator& operator=(const UcxCommunicator&) = delete;

  // Creates the UCP context and worker, exchanges addresses, connects and shakes hands.
  absl::Status Init(Rendezvous& rendezvous);

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(float* data, int64_t count) override;
  absl::Status AllGather(const float* in, int64_t count, float* out) override;
  absl::Status Broadcast(void* data, int64_t bytes, int root) override;
  absl::Status Send(const void* data, int64_t bytes, int peer) override;
  absl::Status Recv(void* data, int64_t bytes, int peer) override;
  absl::Status Barrier() override;
  absl::StatusOr<std::unique_ptr<Pending>> SendAsync(const void* data, int64_t bytes,
                                                     int peer) override;
  absl::StatusOr<std::unique_ptr<Pending>> RecvAsync(void* data, int64_t bytes, int peer) override;

  void Abort(const absl::Status& reason) override {
    absl::MutexLock lock(&abort_mu_);
    if (abort_requested_.load(std::memory_order_relaxed)) return;
    abort_reason_ = reason;
    abort_requested_.store(true, std::memory_order_release);
  }

 private:
  class UcxPending;

  struct Peer {
    int rank = -1;
    ucp_ep_h ep = nullptr;
    std::atomic<int> ep_error{UCS_OK};    // set by OnEndpointError
    std::optional<ProcessWatch> process;  // set for peers on this host (see Init)
    void* notice_request = nullptr;       // the pre-posted receive of this peer's failure notice
    ucp_tag_recv_info_t notice_info{};
    std::array<char, kNoticeBytes> notice{};
  };

  // UCX's endpoint error callback (runs inside ucp_worker_progress); arg is the Peer.
  static void OnEndpointError(void* arg, ucp_ep_h ep, ucs_status_t status);

  // Waits until every transfer is done or one fails; `op` names the call in errors.
  absl::Status WaitAll(absl::Span<Transfer* const> transfers, std::string_view op,
                       absl::Duration timeout);

  // The sticky failure if any; otherwise fails the communicator on an Abort() or a peer's
  // failure notice.
  absl::Status CheckGroup();
  // Fails the communicator with UNAVAILABLE when `peer`'s endpoint has failed or (with
  // check_process, a syscall) its process has exited. Only peers a call waits for are checked:
  // a rank that finished and left is no failure for ranks that no longer talk to it.
  absl::Status CheckPeerAlive(int peer, bool check_process);
  // Records `status` as the communicator's failure (the first one wins), tells the peers and
  // tears UCX down. Returns the recorded failure.
  absl::Status Fail(absl::Status status);
  // Fail() with ABORTED carrying the reason given to Abort().
  absl::Status FailOnAbort();
  // Cancels receives, closes endpoints (force: without flushing) and destroys the worker and
  // context; every transfer still in flight completes with the failure.
  void Teardown(bool force);
  // Best effort: sends failure_ to every reachable peer and progresses a little so the notices
  // leave.
  void SendNotices();

  absl::Status CheckPeer(std::string_view op, int peer) const;
  absl::Status PostSend(Transfer& t, const void* data, int64_t bytes, int peer, uint64_t tag);
  absl::Status PostRecv(Transfer& t, void* data, int64_t bytes, int peer, uint64_t tag);
  // Moves `t` to done when its request completed.
  void Poll(Transfer& t);
  void Complete(Transfer& t, ucs_status_t status);
  void Untrack(Transfer* t) {
    in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), t));
  }
  // Progresses the worker; sleeps a little when nothing happened for `idle` rounds.
  void ProgressOrBackOff(int& idle);

  // One phase of collective `seq`: posts the receives, then the sends, and waits for all.
  absl::Status Phase(uint64_t seq, int phase, absl::Span<const RecvSpec> recvs,
                     absl::Span<const SendSpec> sends, std::string_view op, absl::Duration timeout);
  absl::Status Phase(uint64_t seq, int phase, absl::Span<const RecvSpec> recvs,
                     absl::Span<const SendSpec> sends, std::string_view op) {
    return Phase(seq, phase, recvs, sends, op, options_.timeout);
  }
  absl::Status Handshake();
  absl::Status AllReduceSmall(float* data, int64_t count);
  absl::Status AllReduceLarge(float* data, int64_t count);

  const WorldSpec world_;
  const int rank_;
  const int size_;
  const UcxOptions options_;

  std::unique_ptr<ucp_context, ContextDeleter> context_;
  std::unique_ptr<ucp_worker, WorkerDeleter> worker_;  // destroyed before context_
  std::vector<Peer> peers_;                            // index = rank; never resized

  std::vector<Transfer*> in_flight_;  // transfers whose request is live
  std::vector<uint64_t> send_seq_ = std::vector<uint64_t>(size_, 0);  // p2p messages sent to r
  std::vector<uint64_t> recv_seq_ = std::vector<uint64_t>(size_, 0);  // ... received from r
  uint64_t next_collective_ = 0;
  std::vector<float> scratch_;  // collectives' receive space
  std::string notice_text_;     // the notice being sent to the peers
  std::deque<Transfer> notice_sends_;
  absl::Status failure_;  // sticky; OK while healthy

  absl::Mutex abort_mu_;
  std::atomic<bool> abort_requested_{false};
  absl::Status abort_reason_ ABSL_GUARDED_BY(abort_mu_);
};

void UcxCommunicator::OnEndpointError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* peer = static_cast<Peer*>(arg);
  int expected = UCS_OK;
  peer->ep_error.compare_exchange_strong(expected, status);
}

// An asynchronous send or receive: owns its Transfer, which the communicator tracks while the
// request is live.
class UcxCommunicator::UcxPending final : public Communicator::Pending {
 public:
  UcxPending(UcxCommunicator* comm, std::unique_ptr<Transfer> transfer)
      : comm_(comm), transfer_(std::move(transfer)) {}
  ~UcxPending() override {
    if (!transfer_->done) Wait().IgnoreError();
  }

  absl::Status Wait() override {
    Transfer* t = transfer_.get();
    return comm_->WaitAll(absl::MakeConstSpan(&t, 1), t->is_recv ? "RecvAsync" : "SendAsync",
                          comm_->options_.timeout);
  }

 private:
  UcxCommunicator* const comm_;
  const std::unique_ptr<Transfer> transfer_;
};

absl::Status UcxCommunicator::Init(Rendezvous& rendezvous) {
  ucp_config_t* raw_config = nullptr;
  RS_UCX_RETURN_IF_ERROR(ucp_config_read(nullptr, nullptr, &raw_config));
  const std::unique_ptr<ucp_config_t, ConfigDeleter> config(raw_config);
  if (!options_.transports.empty()) {
    RS_UCX_RETURN_IF_ERROR(ucp_config_modify(config.get(), "TLS", options_.transports.c_str()));
  }
  // A dead peer's endpoint errors at the next keepalive round after its death.
  const std::string keepalive = absl::StrCat(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.peer_failure_timeout) / 3), "ms");
  RS_UCX_RETURN_IF_ERROR(ucp_config_modify(config.get(), "KEEPALIVE_INTERVAL", keepalive.c_str()));

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG;
  params.estimated_num_eps = static_cast<size_t>(size_);
  ucp_context_h context = nullptr;
  RS_UCX_RETURN_IF_ERROR(ucp_init(&params, config.get(), &context));
  context_.reset(context);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h worker = nullptr;
  RS_UCX_RETURN_IF_ERROR(ucp_worker_create(context_.get(), &worker_params, &worker));
  worker_.reset(worker);

  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS;
  RS_UCX_RETURN_IF_ERROR(ucp_worker_query(worker, &attr));
  RankIdentity self;
  self.pid = ::getpid();
  self.process_namespace = internal::LocalProcessNamespace();
  self.address.assign(reinterpret_cast<const char*>(attr.address), attr.address_length);
  ucp_worker_release_address(worker, attr.address);

  RS_ASSIGN_OR_RETURN(
      const std::vector<std::string> blobs,
      rendezvous.Exchange(world_, rank_, EncodeBlob(self), options_.connect_timeout));
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    RS_ASSIGN_OR_RETURN(const RankIdentity peer, DecodeBlob(blobs[p], p));
    // A peer on this host is watched through its pid, and its endpoint does without UCX's
    // peer error handling, which would rule out shared memory; remote peers rely on it.
    const bool same_host = options_.shared_memory && !self.process_namespace.empty() &&
                           peer.process_namespace == self.process_namespace;
    if (same_host) {
      absl::StatusOr<ProcessWatch> watch = ProcessWatch::Open(peer.pid);
      if (!watch.ok()) {
        return absl::UnavailableError(
            absl::StrCat("rank ", p, " (pid ", peer.pid,
                         ") exited before connecting: ", watch.status().message()));
      }
      peers_[p].process.emplace(*std::move(watch));
    }
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                           UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep_params.address = reinterpret_cast<const ucp_address_t*>(peer.address.data());
    ep_params.err_mode = same_host ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
    ep_params.err_handler.cb = &OnEndpointError;
    ep_params.err_handler.arg = &peers_[p];
    RS_UCX_RETURN_IF_ERROR(ucp_ep_create(worker, &ep_params, &peers_[p].ep));
  }
  for (Peer& peer : peers_) {
    if (peer.rank == rank_) continue;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    RS_UCX_ASSIGN_REQUEST_OR_RETURN(peer.notice_request,
                                    ucp_tag_recv_nbx(worker, peer.notice.data(), peer.notice.size(),
                                                     ControlTag(peer.rank), kTagFullMask, &param));
  }
  return Handshake();
}

absl::Status UcxCommunicator::Handshake() {
  const uint64_t seq = next_collective_++;
  const std::array<uint64_t, 2> hello = {kHandshakeMagic, static_cast<uint64_t>(rank_)};
  std::vector<std::array<uint64_t, 2>> received(size_);
  std::vector<RecvSpec> recvs;
  std::vector<SendSpec> sends;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    recvs.push_back({p, received[p].data(), sizeof hello});
    sends.push_back({p, hello.data(), sizeof hello});
  }
  RS_RETURN_IF_ERROR(Phase(seq, 0, recvs, sends, "connect", options_.connect_timeout));
  for (int p = 0; p < size_; ++p) {
    if (p != rank_ && (received[p][0] != kHandshakeMagic || received[p][1] != uint64_t(p))) {
      return Fail(absl::FailedPreconditionError(
          absl::StrCat("handshake from rank ", p, " carried magic ", received[p][0], " and rank ",
                       received[p][1], ": the peer runs another protocol")));
    }
  }
  return absl::OkStatus();
}

absl::Status UcxCommunicator::CheckGroup() {
  if (!failure_.ok()) return failure_;
  if (abort_requested_.load(std::memory_order_acquire)) return FailOnAbort();
  for (Peer& peer : peers_) {
    if (peer.notice_request == nullptr) continue;
    const ucs_status_t status = ucp_tag_recv_request_test(peer.notice_request, &peer.notice_info);
    if (status == UCS_INPROGRESS) continue;
    ucp_request_free(peer.notice_request);
    peer.notice_request = nullptr;
    const size_t length = std::min(peer.notice_info.length, peer.notice.size());
    return Fail(absl::UnavailableError(absl::StrCat("rank ", peer.rank, " failed: ",
                                                    status == UCS_OK
                                                        ? std::string(peer.notice.data(), length)
                                                        : std::string(ucs_status_string(status)))));
  }
  return absl::OkStatus();
}

absl::Status UcxCommunicator::CheckPeerAlive(int peer, bool check_process) {
  const Peer& p = peers_[peer];
  const auto ep_error = static_cast<ucs_status_t>(p.ep_error.load(std::memory_order_acquire));
  if (ep_error != UCS_OK) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "rank ", peer, " failed or disconnected (UCX: ", ucs_status_string(ep_error), ")")));
  }
  if (check_process && p.process.has_value() && p.process->Exited()) {
    return Fail(absl::UnavailableError(
        absl::StrCat("rank ", peer, " failed: its process (pid ", p.process->pid(), ") exited")));
  }
  return absl::OkStatus();
}

absl::Status UcxCommunicator::FailOnAbort() {
  absl::Status reason;
  {
    absl::MutexLock lock(&abort_mu_);
    reason = abort_reason_;
  }
  return Fail(absl::AbortedError(
      absl::StrCat("communicator aborted on rank ", rank_, ": ", reason.ToString())));
}

absl::Status UcxCommunicator::Fail(absl::Status status) {
  if (!failure_.ok()) return failure_;
  failure_ = std::move(status);
  if (worker_ != nullptr) {
    SendNotices();
    Teardown(/*force=*/true);
  }
  return failure_;
}

void UcxCommunicator::SendNotices() {
  notice_text_ = failure_.ToString().substr(0, kNoticeBytes);
  for (Peer& peer : peers_) {
    if (peer.ep == nullptr || peer.ep_error.load() != UCS_OK ||
        (peer.process.has_value() && peer.process->Exited())) {
      continue;
    }
    Transfer& t = notice_sends_.emplace_back();
    if (!PostSend(t, notice_text_.data(), static_cast<int64_t>(notice_text_.size()), peer.rank,
                  ControlTag(rank_))
             .ok()) {
      notice_sends_.pop_back();
    }
  }
  const absl::Time deadline = absl::Now() + kNoticeGrace;
  int idle = 0;
  for (;;) {
    bool pending = false;
    for (Transfer& t : notice_sends_) {
      Poll(t);
      pending |= !t.done;
    }
    if (!pending || absl::Now() >= deadline) return;
    ProgressOrBackOff(idle);
  }
}

void UcxCommunicator::Teardown(bool force) {
  ucp_worker_h worker = worker_.get();
  for (Transfer* t : in_flight_) {
    if (t->is_recv) ucp_request_cancel(worker, t->request);
  }
  for (Peer& peer : peers_) {
    if (peer.notice_request != nullptr) ucp_request_cancel(worker, peer.notice_request);
  }
  std::vector<void*> closing;
  for (Peer& peer : peers_) {
    if (peer.ep == nullptr) continue;
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    const ucs_status_ptr_t request = ucp_ep_close_nbx(peer.ep, &param);
    if (UCS_PTR_IS_PTR(request)) closing.push_back(request);
    peer.ep = nullptr;
  }
  const absl::Time deadline = absl::Now() + (force ? kForceCloseGrace : kCloseGrace);
  int idle = 0;
  for (;;) {
    for (size_t i = in_flight_.size(); i-- > 0;) Poll(*in_flight_[i]);
    for (Peer& peer : peers_) {
      if (peer.notice_request != nullptr &&
          ucp_request_check_status(peer.notice_request) != UCS_INPROGRESS) {
        ucp_request_free(peer.notice_request);
        peer.notice_request = nullptr;
      }
    }
    for (void*& request : closing) {
      if (request != nullptr && ucp_request_check_status(request) != UCS_INPROGRESS) {
        ucp_request_free(request);
        request = nullptr;
      }
    }
    const bool notices_done = std::all_of(
        peers_.begin(), peers_.end(), [](const Peer& p) { return p.notice_request == nullptr; });
    const bool closed =
        std::all_of(closing.begin(), closing.end(), [](void* r) { return r == nullptr; });
    if ((in_flight_.empty() && notices_done && closed) || absl::Now() >= deadline) break;
    ProgressOrBackOff(idle);
  }
  // What did not finish in time is abandoned: destroying the worker stops every transfer.
  for (Transfer* t : in_flight_) {
    t->request = nullptr;
    t->done = true;
    t->result = failure_.ok() ? absl::InternalError("transfer abandoned at teardown") : failure_;
  }
  in_flight_.clear();
  notice_sends_.clear();
  worker_.reset();
  context_.reset();
}

void UcxCommunicator::ProgressOrBackOff(int& idle) {
  if (ucp_worker_progress(worker_.get()) != 0) {
    idle = 0;
    return;
  }
  ++idle;
  if (idle > kYieldRounds) {
    absl::SleepFor(kIdleSleep);
  } else if (idle > kSpinRounds) {
    std::this_thread::yield();
  }
}

absl::Status UcxCommunicator::CheckPeer(std::string_view op, int peer) const {
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(op), ": peer ", peer,
                                                   " is not another rank of [0, ", size_,
                                                   ") (this is rank ", rank_, ")"));
  }
  return absl::OkStatus();
}

absl::Status UcxCommunicator::PostSend(Transfer& t, const void* data, int64_t bytes, int peer,
                                       uint64_t tag) {
  t.peer = peer;
  t.bytes = bytes;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  RS_UCX_ASSIGN_REQUEST_OR_RETURN(
      t.request, ucp_tag_send_nbx(peers_[peer].ep, data, static_cast<size_t>(bytes), tag, &param));
  if (t.request == nullptr) {
    Complete(t, UCS_OK);
  } else {
    in_flight_.push_back(&t);
  }
  return absl::OkStatus();
}

absl::Status UcxCommunicator::PostRecv(Transfer& t, void* data, int64_t bytes, int peer,
                                       uint64_t tag) {
  t.peer = peer;
  t.bytes = bytes;
  t.is_recv = true;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL | UCP_OP_ATTR_FIELD_RECV_INFO;
  param.recv_info.tag_info = &t.info;
  RS_UCX_ASSIGN_REQUEST_OR_RETURN(
      t.request,
      ucp_tag_recv_nbx(worker_.get(), data, static_cast<size_t>(bytes), tag, kTagFullMask, &param));
  if (t.request == nullptr) {
    Complete(t, UCS_OK);
  } else {
    in_flight_.push_back(&t);
  }
  return absl::OkStatus();
}

void UcxCommunicator::Poll(Transfer& t) {
  if (t.done) return;
  const ucs_status_t status = t.is_recv ? ucp_tag_recv_request_test(t.request, &t.info)
                                        : ucp_request_check_status(t.request);
  if (status == UCS_INPROGRESS) return;
  ucp_request_free(t.request);
  t.request = nullptr;
  Untrack(&t);
  Complete(t, status);
}

void UcxCommunicator::Complete(Transfer& t, ucs_status_t status) {
  t.done = true;
  const char* verb = t.is_recv ? "receive from" : "send to";
  if (!failure_.ok() && status != UCS_OK) {
    t.result = failure_;
  } else if (status == UCS_ERR_MESSAGE_TRUNCATED) {
    t.result = absl::InvalidArgumentError(absl::StrCat("size mismatch: rank ", t.peer,
                                                       " sent more than the ", t.bytes,
                                                       " bytes rank ", rank_, " expected"));
  } else if (status != UCS_OK) {
    t.result = absl::UnavailableError(
        absl::StrCat(verb, " rank ", t.peer, " failed (UCX: ", ucs_status_string(status), ")"));
  } else if (t.is_recv && static_cast<int64_t>(t.info.length) != t.bytes) {
    t.result = absl::InvalidArgumentError(absl::StrCat("size mismatch: rank ", t.peer, " sent ",
                                                       t.info.length, " bytes but rank ", rank_,
                                                       " expected ", t.bytes));
  } else {
    t.result = absl::OkStatus();
  }
}

absl::Status UcxCommunicator::WaitAll(absl::Span<Transfer* const> transfers, std::string_view op,
                                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int idle = 0;
  for (;;) {
    bool pending = false;
    for (Transfer* t : transfers) {
      Poll(*t);
      if (!t->done) {
        pending = true;
      } else if (!t->result.ok()) {
        // A point-to-point size mismatch leaves the pair in step; anything else breaks the group.
        if (absl::IsInvalidArgument(t->result) && !t->collective) return t->result;
        return Fail(t->result);
      }
    }
    if (!pending) return absl::OkStatus();
    RS_RETURN_IF_ERROR(CheckGroup());
    const bool check_process = idle >= kSpinRounds && idle % kProcessCheckRounds == 0;
    for (Transfer* t : transfers) {
      if (!t->done) RS_RETURN_IF_ERROR(CheckPeerAlive(t->peer, check_process));
    }
    ProgressOrBackOff(idle);
    if (absl::Now() >= deadline) {
      std::vector<int> waiting;
      for (Transfer* t : transfers) {
        if (!t->done) waiting.push_back(t->peer);
      }
      std::sort(waiting.begin(), waiting.end());
      waiting.erase(std::unique(waiting.begin(), waiting.end()), waiting.end());
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          std::string(op), " on rank ", rank_, " did not complete within ",
          absl::FormatDuration(timeout), "; waiting for rank(s) ", absl::StrJoin(waiting, ", "))));
    }
  }
}

absl::Status UcxCommunicator::Phase(uint64_t seq, int phase, absl::Span<const RecvSpec> recvs,
                                    absl::Span<const SendSpec> sends, std::string_view op,
                                    absl::Duration timeout) {
  std::deque<Transfer> transfers;  // stable addresses
  std::vector<Transfer*> all;
  for (const RecvSpec& r : recvs) {
    Transfer& t = transfers.emplace_back();
    t.collective = true;
    all.push_back(&t);
    absl::Status posted = PostRecv(t, r.data, r.bytes, r.peer, CollectiveTag(seq, phase, r.peer));
    if (!posted.ok()) return Fail(posted);
  }
  for (const SendSpec& s : sends) {
    Transfer& t = transfers.emplace_back();
    t.collective = true;
    all.push_back(&t);
    absl::Status posted = PostSend(t, s.data, s.bytes, s.peer, CollectiveTag(seq, phase, rank_));
    if (!posted.ok()) return Fail(posted);
  }
  absl::Status status = WaitAll(all, op, timeout);
  RS_CHECK(std::all_of(all.begin(), all.end(), [](const Transfer* t) { return t->done; }));
  return status;
}

absl::Status UcxCommunicator::AllReduceSum(float* data, int64_t count) {
  RS_RETURN_IF_ERROR(CheckCount("AllReduceSum", count, data));
  RS_RETURN_IF_ERROR(CheckGroup());
  if (size_ == 1) return absl::OkStatus();
  if (count * static_cast<int64_t>(sizeof(float)) <= kSmallAllReduceBytes) {
    return AllReduceSmall(data, count);
  }
  return AllReduceLarge(data, count);
}

// Gather to rank 0, which sums in rank order, then broadcast.
absl::Status UcxCommunicator::AllReduceSmall(float* data, int64_t count) {
  const uint64_t seq = next_collective_++;
  const int64_t bytes = count * static_cast<int64_t>(sizeof(float));
  if (rank_ != 0) {
    const SendSpec up{0, data, bytes};
    RS_RETURN_IF_ERROR(Phase(seq, 0, {}, absl::MakeConstSpan(&up, 1), "AllReduceSum"));
    const RecvSpec down{0, data, bytes};
    return Phase(seq, 1, absl::MakeConstSpan(&down, 1), {}, "AllReduceSum");
  }
  scratch_.resize(static_cast<size_t>((size_ - 1) * count));
  std::vector<RecvSpec> recvs;
  std::vector<SendSpec> sends;
  for (int p = 1; p < size_; ++p) {
    recvs.push_back({p, scratch_.data() + (p - 1) * count, bytes});
    sends.push_back({p, data, bytes});
  }
  RS_RETURN_IF_ERROR(Phase(seq, 0, recvs, {}, "AllReduceSum"));
  for (int p = 1; p < size_; ++p) {
    const float* src = scratch_.data() + (p - 1) * count;
    for (int64_t i = 0; i < count; ++i) data[i] += src[i];
  }
  return Phase(seq, 1, {}, sends, "AllReduceSum");
}

// Reduce-scatter (rank r receives everyone's r-th chunk and sums it in rank order), then
// all-gather of the summed chunks.
absl::Status UcxCommunicator::AllReduceLarge(float* data, int64_t count) {
  const uint64_t seq = next_collective_++;
  const auto begin = [&](int r) { return ChunkBegin(count, size_, r); };
  const int64_t mine = begin(rank_);
  const int64_t length = begin(rank_ + 1) - mine;
  const auto chunk_bytes = [&](int r) {
    return (begin(r + 1) - begin(r)) * static_cast<int64_t>(sizeof(float));
  };
  scratch_.resize(static_cast<size_t>(size_ * length));
  std::vector<RecvSpec> recvs;
  std::vector<SendSpec> sends;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    recvs.push_back({p, scratch_.data() + p * length, chunk_bytes(rank_)});
    sends.push_back({p, data + begin(p), chunk_bytes(p)});
  }
  RS_RETURN_IF_ERROR(Phase(seq, 0, recvs, sends, "AllReduceSum"));

  // Rank r's contribution to this chunk; rank 0's is the accumulator.
  const auto source = [&](int r) {
    return r == rank_ ? data + mine : scratch_.data() + r * length;
  };
  float* acc = source(0);
  for (int r = 1; r < size_; ++r) {
    const float* src = source(r);
    for (int64_t i = 0; i < length; ++i) acc[i] += src[i];
  }
  if (acc != data + mine) std::memcpy(data + mine, acc, static_cast<size_t>(chunk_bytes(rank_)));

  recvs.clear();
  sends.clear();
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    recvs.push_back({p, data + begin(p), chunk_bytes(p)});
    sends.push_back({p, data + mine, chunk_bytes(rank_)});
  }
  return Phase(seq, 1, recvs, sends, "AllReduceSum");
}

absl::Status UcxCommunicator::AllGather(const float* in, int64_t count, float* out) {
  RS_RETURN_IF_ERROR(CheckCount("AllGather", count, in));
  RS_RETURN_IF_ERROR(CheckCount("AllGather", count, out));
  float* const own = out + rank_ * count;
  const auto address = [](const float* p) { return reinterpret_cast<uintptr_t>(p); };
  if (in != own && address(in) < address(out + size_ * count) &&
      address(out) < address(in + count)) {
    return absl::InvalidArgumentError(
        "AllGather: `in` overlaps `out` other than at this rank's block");
  }
  RS_RETURN_IF_ERROR(CheckGroup());
  if (in != own && count > 0) std::memcpy(own, in, static_cast<size_t>(count) * sizeof(float));
  if (size_ == 1) return absl::OkStatus();
  const uint64_t seq = next_collective_++;
  const int64_t bytes = count * static_cast<int64_t>(sizeof(float));
  std::vector<RecvSpec> recvs;
  std::vector<SendSpec> sends;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    recvs.push_back({p, out + p * count, bytes});
    sends.push_back({p, own, bytes});
  }
  return Phase(seq, 0, recvs, sends, "AllGather");
}

absl::Status UcxCommunicator::Broadcast(void* data, int64_t bytes, int root) {
  RS_RETURN_IF_ERROR(CheckBytes("Broadcast", bytes, data));
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("Broadcast: root ", root, " is outside [0, ", size_, ")"));
  }
  RS_RETURN_IF_ERROR(CheckGroup());
  if (size_ == 1) return absl::OkStatus();
  const uint64_t seq = next_collective_++;
  if (rank_ != root) {
    const RecvSpec from_root{root, data, bytes};
    return Phase(seq, 0, absl::MakeConstSpan(&from_root, 1), {}, "Broadcast");
  }
  std::vector<SendSpec> sends;
  for (int p = 0; p < size_; ++p) {
    if (p != rank_) sends.push_back({p, data, bytes});
  }
  return Phase(seq, 0, {}, sends, "Broadcast");
}

absl::Status UcxCommunicator::Barrier() {
  RS_RETURN_IF_ERROR(CheckGroup());
  if (size_ == 1) return absl::OkStatus();
  const uint64_t seq = next_collective_++;
  const char token = 1;
  std::vector<char> tokens(size_);
  if (rank_ != 0) {
    const SendSpec arrive{0, &token, 1};
    RS_RETURN_IF_ERROR(Phase(seq, 0, {}, absl::MakeConstSpan(&arrive, 1), "Barrier"));
    const RecvSpec release{0, &tokens[0], 1};
    return Phase(seq, 1, absl::MakeConstSpan(&release, 1), {}, "Barrier");
  }
  std::vector<RecvSpec> arrivals;
  std::vector<SendSpec> releases;
  for (int p = 1; p < size_; ++p) {
    arrivals.push_back({p, &tokens[p], 1});
    releases.push_back({p, &token, 1});
  }
  RS_RETURN_IF_ERROR(Phase(seq, 0, arrivals, {}, "Barrier"));
  return Phase(seq, 1, {}, releases, "Barrier");
}

absl::Status UcxCommunicator::Send(const void* data, int64_t bytes, int peer) {
  RS_ASSIGN_OR_RETURN(std::unique_ptr<Pending> pending, SendAsync(data, bytes, peer));
  return pending->Wait();
}

absl::Status UcxCommunicator::Recv(void* data, int64_t bytes, int peer) {
  RS_ASSIGN_OR_RETURN(std::unique_ptr<Pending> pending, RecvAsync(data, bytes, peer));
  return pending->Wait();
}

absl::StatusOr<std::unique_ptr<Communicator::Pending>> UcxCommunicator::SendAsync(const void* data,
                                                                                  int64_t bytes,
                                                                                  int peer) {
  RS_RETURN_IF_ERROR(CheckBytes("Send", bytes, data));
  RS_RETURN_IF_ERROR(CheckPeer("Send", peer));
  RS_RETURN_IF_ERROR(CheckGroup());
  auto t = std::make_unique<Transfer>();
  const absl::Status posted =
      PostSend(*t, data, bytes, peer, PointToPointTag(send_seq_[peer]++, rank_));
  if (!posted.ok()) return Fail(posted);
  return std::make_unique<UcxPending>(this, std::move(t));
}

absl::StatusOr<std::unique_ptr<Communicator::Pending>> UcxCommunicator::RecvAsync(void* data,
                                                                                  int64_t bytes,
                                                                                  int peer) {
  RS_RETURN_IF_ERROR(CheckBytes("Recv", bytes, data));
  RS_RETURN_IF_ERROR(CheckPeer("Recv", peer));
  RS_RETURN_IF_ERROR(CheckGroup());
  auto t = std::make_unique<Transfer>();
  const absl::Status posted =
      PostRecv(*t, data, bytes, peer, PointToPointTag(recv_seq_[peer]++, peer));
  if (!posted.ok()) return Fail(posted);
  return std::make_unique<UcxPending>(this, std::move(t));
}

absl::Status ValidateOptions(const UcxOptions& options) {
  for (auto [name, value] : {std::pair<const char*, absl::Duration>{"timeout", options.timeout},
                             {"connect_timeout", options.connect_timeout},
                             {"peer_failure_timeout", options.peer_failure_timeout}}) {
    if (value <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("UcxOptions.", name, " ", absl::FormatDuration(value), " is not positive"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateUcxCommunicator(const WorldSpec& world,
                                                                    int rank,
                                                                    Rendezvous& rendezvous,
                                                                    const UcxOptions& options) {
  RS_RETURN_IF_ERROR(world.Validate());
  RS_RETURN_IF_ERROR(world.ValidateRank(rank));
  RS_RETURN_IF_ERROR(ValidateOptions(options));
  auto comm = std::make_unique<UcxCommunicator>(world, rank, options);
  RS_RETURN_IF_ERROR(comm->Init(rendezvous));
  return comm;
}

}  // namespace rackserve::comm
