// The NCCL communicator on real GPUs: one rank per device, each in its own forked process (the
// parent never touches CUDA, which does not survive a fork). Skips visibly without enough
// devices: one rank needs one device, two ranks two.
#include "runtime/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/file_rendezvous.h"
#include "tests/comm/rank_processes.h"

namespace rackserve::comm {
namespace {

using ::rackserve::comm::testing::Expect;
using ::rackserve::comm::testing::MonotonicNanos;
using ::rackserve::comm::testing::RankProcesses;
using ::rackserve::comm::testing::TempDir;
using ::rackserve::comm::testing::TestWorld;
using ::testing::Each;

constexpr absl::Duration kTestTimeout = absl::Seconds(60);

// CUDA devices, counted in a child process so that this process stays CUDA-free.
int DeviceCount() {
  const pid_t child = ::fork();
  if (child == 0) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
    ::_exit(count > 100 ? 100 : count);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
}

// A device buffer of n floats, freed on destruction.
class DeviceFloats {
 public:
  explicit DeviceFloats(int64_t n) : n_(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr_), std::max<int64_t>(n, 1) * 4) != cudaSuccess) {
      ptr_ = nullptr;
    }
  }
  ~DeviceFloats() { cudaFree(ptr_); }
  float* get() const { return ptr_; }
  absl::Status Upload(const std::vector<float>& host) {
    return Expect(
        cudaMemcpy(ptr_, host.data(), host.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess,
        "upload");
  }
  absl::StatusOr<std::vector<float>> Download() const {
    std::vector<float> host(n_);
    RS_RETURN_IF_ERROR(Expect(
        cudaMemcpy(host.data(), ptr_, n_ * 4, cudaMemcpyDeviceToHost) == cudaSuccess, "download"));
    return host;
  }

 private:
  int64_t n_;
  float* ptr_ = nullptr;
};

absl::StatusOr<std::unique_ptr<Communicator>> Connect(const std::string& dir, int size, int rank,
                                                      const NcclOptions& options) {
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir);
  return CreateNcclCommunicator(TestWorld(size, "nccl-communicator-test"), rank, /*device=*/rank,
                                *rendezvous, options);
}

std::vector<float> Input(uint64_t seed, int rank, int64_t n) {
  std::mt19937_64 rng(seed + 7919 * rank);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

void RunRanks(int size, const std::function<absl::Status(int rank)>& body) {
  RankProcesses ranks(size, body);
  EXPECT_THAT(ranks.Wait(kTestTimeout), Each(0));
}

TEST(NcclCommunicatorTest, SingleRankCollectivesArgumentsAndAbort) {
  if (DeviceCount() < 1) GTEST_SKIP() << "no CUDA device on this machine";
  TempDir dir;
  RunRanks(1, [&](int rank) -> absl::Status {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                        Connect(dir.path(), 1, rank, NcclOptions{}));
    const std::vector<float> x = Input(1, 0, 1000);
    DeviceFloats data(1000), out(1000);
    RS_RETURN_IF_ERROR(data.Upload(x));
    RS_RETURN_IF_ERROR(comm->AllReduceSum(data.get(), 1000));
    RS_RETURN_IF_ERROR(comm->AllGather(data.get(), 1000, out.get()));
    RS_RETURN_IF_ERROR(comm->Broadcast(out.get(), 4000, 0));
    RS_RETURN_IF_ERROR(comm->Barrier());
    RS_ASSIGN_OR_RETURN(const std::vector<float> y, out.Download());
    RS_RETURN_IF_ERROR(Expect(y == x, "one-rank collectives changed the data"));

    const absl::Status self = comm->Send(data.get(), 4, 0);
    RS_RETURN_IF_ERROR(Expect(self.code() == absl::StatusCode::kInvalidArgument &&
                                  absl::StrContains(self.message(), "peer 0"),
                              self.ToString()));
    const absl::Status root = comm->Broadcast(data.get(), 4, 3);
    RS_RETURN_IF_ERROR(Expect(root.code() == absl::StatusCode::kInvalidArgument &&
                                  absl::StrContains(root.message(), "root 3"),
                              root.ToString()));

    std::thread([&] { comm->Abort(absl::CancelledError("draining")); }).join();
    const absl::Status aborted = comm->Barrier();
    RS_RETURN_IF_ERROR(Expect(aborted.code() == absl::StatusCode::kAborted &&
                                  absl::StrContains(aborted.message(), "draining"),
                              aborted.ToString()));
    return Expect(comm->AllReduceSum(data.get(), 1) == aborted, "the failure is sticky");
  });
}

TEST(NcclCommunicatorTest, TwoRanksAllReduceAllGatherBroadcastAndSendRecv) {
  if (DeviceCount() < 2) GTEST_SKIP() << "needs 2 CUDA devices";
  TempDir dir;
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  RunRanks(2, [&](int rank) -> absl::Status {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                        Connect(dir.path(), 2, rank, NcclOptions{}));
    constexpr int64_t kCount = 100'003;
    DeviceFloats data(kCount), gathered(2 * kCount);
    RS_RETURN_IF_ERROR(data.Upload(Input(seed, rank, kCount)));
    RS_RETURN_IF_ERROR(comm->AllGather(data.get(), kCount, gathered.get()));
    RS_ASSIGN_OR_RETURN(const std::vector<float> all, gathered.Download());
    for (int r = 0; r < 2; ++r) {
      const std::vector<float> want = Input(seed, r, kCount);
      RS_RETURN_IF_ERROR(Expect(std::equal(want.begin(), want.end(), all.begin() + r * kCount),
                                absl::StrCat("AllGather block ", r)));
    }
    RS_RETURN_IF_ERROR(comm->AllReduceSum(data.get(), kCount));
    RS_ASSIGN_OR_RETURN(const std::vector<float> sum, data.Download());
    const std::vector<float> a = Input(seed, 0, kCount), b = Input(seed, 1, kCount);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < kCount; ++i) {
      const double exact = double{a[i]} + double{b[i]};
      err += (sum[i] - exact) * (sum[i] - exact);
      norm += exact * exact;
    }
    RS_RETURN_IF_ERROR(Expect(std::sqrt(err / norm) < 1e-6, "AllReduceSum normalized error"));

    RS_RETURN_IF_ERROR(comm->Broadcast(gathered.get(), kCount * 4, 1));
    RS_ASSIGN_OR_RETURN(const std::vector<float> broadcast, gathered.Download());
    RS_RETURN_IF_ERROR(Expect(std::equal(b.begin(), b.end(), broadcast.begin()), "Broadcast"));

    // Ordered point-to-point: rank 0 sends two messages, rank 1 receives them in order.
    DeviceFloats first(10), second(20);
    if (rank == 0) {
      RS_RETURN_IF_ERROR(first.Upload(std::vector<float>(10, 1.0f)));
      RS_RETURN_IF_ERROR(second.Upload(std::vector<float>(20, 2.0f)));
      RS_ASSIGN_OR_RETURN(auto pending, comm->SendAsync(first.get(), 40, 1));
      RS_RETURN_IF_ERROR(comm->Send(second.get(), 80, 1));
      RS_RETURN_IF_ERROR(pending->Wait());
    } else {
      RS_RETURN_IF_ERROR(comm->Recv(first.get(), 40, 0));
      RS_RETURN_IF_ERROR(comm->Recv(second.get(), 80, 0));
      RS_ASSIGN_OR_RETURN(const std::vector<float> f, first.Download());
      RS_ASSIGN_OR_RETURN(const std::vector<float> s, second.Download());
      RS_RETURN_IF_ERROR(
          Expect(f == std::vector<float>(10, 1.0f) && s == std::vector<float>(20, 2.0f),
                 "Send/Recv order"));
    }
    return comm->Barrier();
  });
}

TEST(NcclCommunicatorTest, KilledPeerEndsTheWaitWithinFiveSeconds) {
  if (DeviceCount() < 2) GTEST_SKIP() << "needs 2 CUDA devices";
  TempDir dir;
  testing::SharedArray<std::atomic<int>> ready(2);
  testing::SharedArray<std::atomic<int64_t>> end_ns(1);
  NcclOptions options;
  options.timeout = absl::Seconds(3);  // NCCL may not see a dead peer on NVLink: the timeout does
  RankProcesses ranks(2, [&](int rank) -> absl::Status {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, Connect(dir.path(), 2, rank, options));
    RS_RETURN_IF_ERROR(comm->Barrier());
    ready[rank].store(1);
    if (rank == 1) {
      for (;;) ::pause();
    }
    DeviceFloats data(1 << 20);
    const absl::Status status = comm->AllReduceSum(data.get(), 1 << 20);
    end_ns[0].store(MonotonicNanos());
    return Expect(status.code() == absl::StatusCode::kUnavailable ||
                      status.code() == absl::StatusCode::kDeadlineExceeded,
                  status.ToString());
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((ready[0].load() == 0 || ready[1].load() == 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Milliseconds(300));
  const int64_t kill_ns = MonotonicNanos();
  ranks.Kill(1);
  const std::vector<int> codes = ranks.Wait(kTestTimeout);
  EXPECT_EQ(codes[0], 0);
  EXPECT_LT(end_ns[0].load() - kill_ns, 5'000'000'000);
}

}  // namespace
}  // namespace rackserve::comm
