// Failure behaviour of the UCX communicator between real processes: a rank SIGKILLed in the
// middle of a collective or a receive, Abort() from another thread, an operation timeout, and
// size mismatches. Every surviving rank must return the documented error within 5 seconds of
// the failure (never hang), and fail fast afterwards.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/file_rendezvous.h"
#include "runtime/comm/ucx_communicator.h"
#include "tests/comm/rank_processes.h"

namespace rackserve::comm {
namespace {

using ::rackserve::comm::testing::Expect;
using ::rackserve::comm::testing::MonotonicNanos;
using ::rackserve::comm::testing::RankProcesses;
using ::rackserve::comm::testing::SharedArray;
using ::rackserve::comm::testing::TempDir;
using ::rackserve::comm::testing::TestWorld;
using ::testing::AnyOf;
using ::testing::Each;
using ::testing::HasSubstr;

constexpr absl::Duration kTestTimeout = absl::Seconds(25);
// The bar: a peer's death becomes an error on every other rank within this long.
constexpr int64_t kFailureBoundNanos = 5'000'000'000;

absl::StatusOr<std::unique_ptr<Communicator>> Connect(const std::string& dir, int size, int rank,
                                                      const UcxOptions& options) {
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir);
  return CreateUcxCommunicator(TestWorld(size, "ucx-failure-test"), rank, *rendezvous, options);
}

// What one rank saw, written by the child and read by the parent.
struct Report {
  std::atomic<int> ready{0};  // 1: about to enter the operation under test
  int code = -1;              // absl::StatusCode of that operation
  int64_t end_ns = 0;         // MonotonicNanos() when it returned
  int next_code = -1;         // the code of the call after it
  int64_t next_ns = 0;        // how long that call took
  char message[512] = {};

  void Record(const absl::Status& status) {
    end_ns = MonotonicNanos();
    code = static_cast<int>(status.code());
    const std::string text = status.ToString();
    std::strncpy(message, text.c_str(), sizeof message - 1);
  }
};

// Waits until every rank but `skip` reported ready (or a deadline passes).
void WaitReady(SharedArray<Report>& reports, int size) {
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  for (int r = 0; r < size; ++r) {
    while (reports[r].ready.load() == 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_EQ(reports[r].ready.load(), 1) << "rank " << r << " never got ready";
  }
}

enum class Op { kAllReduceSmall, kAllReduceLarge, kRecv };

struct KillCase {
  const char* name;
  const char* tls;
  bool shared_memory;  // false: UCX peer error handling on every endpoint
  Op op;
  int size;
  int victim;
};

class UcxKillTest : public ::testing::TestWithParam<KillCase> {};

TEST_P(UcxKillTest, EverySurvivorFailsWithinFiveSeconds) {
  const KillCase c = GetParam();
  TempDir dir;
  SharedArray<Report> reports(c.size);
  UcxOptions options;
  options.transports = c.tls;
  options.shared_memory = c.shared_memory;
  options.timeout = absl::Seconds(30);  // far beyond the bar: peer failure detection must act
  options.peer_failure_timeout = absl::Seconds(3);
  RankProcesses ranks(c.size, [&](int rank) -> absl::Status {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                        Connect(dir.path(), c.size, rank, options));
    RS_RETURN_IF_ERROR(comm->Barrier());
    reports[rank].ready.store(1);
    if (rank == c.victim) {
      for (;;) ::pause();  // until SIGKILL
    }
    std::vector<float> data(c.op == Op::kAllReduceLarge ? 1 << 18 : 100, 1.0f);
    const absl::Status status =
        c.op == Op::kRecv ? comm->Recv(data.data(), 400, c.victim)
                          : comm->AllReduceSum(data.data(), static_cast<int64_t>(data.size()));
    reports[rank].Record(status);
    const int64_t start = MonotonicNanos();
    reports[rank].next_code = static_cast<int>(comm->Barrier().code());
    reports[rank].next_ns = MonotonicNanos() - start;
    return absl::OkStatus();
  });
  WaitReady(reports, c.size);
  absl::SleepFor(absl::Milliseconds(300));  // the survivors are blocked in the operation
  const int64_t kill_ns = MonotonicNanos();
  ranks.Kill(c.victim);
  const std::vector<int> codes = ranks.Wait(kTestTimeout);

  for (int r = 0; r < c.size; ++r) {
    if (r == c.victim) {
      EXPECT_EQ(codes[r], 128 + SIGKILL);
      continue;
    }
    SCOPED_TRACE(::testing::Message() << "rank " << r << ": " << reports[r].message);
    ASSERT_EQ(codes[r], 0);
    EXPECT_THAT(static_cast<absl::StatusCode>(reports[r].code),
                AnyOf(absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded));
    EXPECT_THAT(reports[r].message, HasSubstr(absl::StrCat("rank ", c.victim)));
    const int64_t latency = reports[r].end_ns - kill_ns;
    EXPECT_LT(latency, kFailureBoundNanos) << "ms: " << latency / 1'000'000;
    std::printf("rank %d failed %.0f ms after the kill: %s\n", r, latency / 1e6,
                reports[r].message);
    // Failed for good: the next call returns the same error at once.
    EXPECT_EQ(reports[r].next_code, reports[r].code);
    EXPECT_LT(reports[r].next_ns, 100'000'000);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, UcxKillTest,
    ::testing::Values(KillCase{"TcpAllReduceSmallVictim2", "tcp", true, Op::kAllReduceSmall, 4, 2},
                      KillCase{"TcpAllReduceLargeVictim0", "tcp", true, Op::kAllReduceLarge, 4, 0},
                      KillCase{"TcpRecv", "tcp", true, Op::kRecv, 2, 1},
                      // Every endpoint with UCX peer error handling, as between hosts.
                      KillCase{"TcpUcxErrorHandlingAllReduceSmallVictim2", "tcp", false,
                               Op::kAllReduceSmall, 4, 2},
                      KillCase{"TcpUcxErrorHandlingAllReduceLargeVictim0", "tcp", false,
                               Op::kAllReduceLarge, 4, 0},
                      KillCase{"TcpUcxErrorHandlingRecv", "tcp", false, Op::kRecv, 2, 1},
                      KillCase{"ShmAllReduceSmallVictim2", "", true, Op::kAllReduceSmall, 4, 2},
                      KillCase{"ShmAllReduceLargeVictim0", "", true, Op::kAllReduceLarge, 4, 0},
                      KillCase{"ShmRecv", "", true, Op::kRecv, 2, 1}),
    [](const ::testing::TestParamInfo<KillCase>& info) { return std::string(info.param.name); });

// Both ranks run `body`; expects both to exit 0.
void RunTwoRanks(const UcxOptions& options,
                 const std::function<absl::Status(Communicator&)>& body) {
  TempDir dir;
  RankProcesses ranks(2, [&](int rank) -> absl::Status {
    RS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, Connect(dir.path(), 2, rank, options));
    return body(*comm);
  });
  EXPECT_THAT(ranks.Wait(kTestTimeout), Each(0));
}

TEST(UcxFailureTest, AbortFromAnotherThreadUnblocksRecvAndTellsThePeer) {
  SharedArray<Report> reports(2);
  RunTwoRanks(UcxOptions{}, [&](Communicator& comm) -> absl::Status {
    char byte = 0;
    if (comm.rank() == 0) {
      std::thread aborter([&comm] {
        absl::SleepFor(absl::Milliseconds(200));
        comm.Abort(absl::CancelledError("operator drained the replica"));
      });
      const int64_t start = MonotonicNanos();
      const absl::Status status = comm.Recv(&byte, 1, 1);  // rank 1 never sends
      aborter.join();
      reports[0].Record(status);
      RS_RETURN_IF_ERROR(Expect(status.code() == absl::StatusCode::kAborted, status.ToString()));
      RS_RETURN_IF_ERROR(
          Expect(absl::StrContains(status.message(), "operator drained"), status.ToString()));
      RS_RETURN_IF_ERROR(Expect(reports[0].end_ns - start < 2'000'000'000, "Abort took > 2 s"));
      const absl::Status next = comm.Send(&byte, 1, 1);
      return Expect(next == status, absl::StrCat("after Abort: ", next.ToString()));
    }
    // Rank 1 waits for a message rank 0 will never send; rank 0's notice ends the wait.
    const int64_t start = MonotonicNanos();
    const absl::Status status = comm.Recv(&byte, 1, 0);
    RS_RETURN_IF_ERROR(Expect(status.code() == absl::StatusCode::kUnavailable, status.ToString()));
    RS_RETURN_IF_ERROR(Expect(absl::StrContains(status.message(), "rank 0"), status.ToString()));
    return Expect(MonotonicNanos() - start < kFailureBoundNanos, "notice took > 5 s");
  });
}

TEST(UcxFailureTest, TimeoutIsDeadlineExceededNamingThePeer) {
  UcxOptions options;
  options.timeout = absl::Milliseconds(300);
  RunTwoRanks(options, [](Communicator& comm) -> absl::Status {
    float value = 1.0f;
    if (comm.rank() == 0) {
      const absl::Status status = comm.AllReduceSum(&value, 1);  // rank 1 is late
      RS_RETURN_IF_ERROR(
          Expect(status.code() == absl::StatusCode::kDeadlineExceeded, status.ToString()));
      return Expect(absl::StrContains(status.message(), "rank(s) 1"), status.ToString());
    }
    absl::SleepFor(absl::Milliseconds(800));
    const absl::Status status = comm.AllReduceSum(&value, 1);
    RS_RETURN_IF_ERROR(Expect(status.code() == absl::StatusCode::kUnavailable, status.ToString()));
    return Expect(absl::StrContains(status.message(), "rank 0 failed: DEADLINE_EXCEEDED"),
                  status.ToString());
  });
}

TEST(UcxFailureTest, PointToPointSizeMismatchIsInvalidArgumentAndKeepsThePair) {
  RunTwoRanks(UcxOptions{}, [](Communicator& comm) -> absl::Status {
    std::vector<char> buffer(5000, 'x');
    if (comm.rank() == 0) {
      RS_RETURN_IF_ERROR(comm.Send(buffer.data(), 100, 1));   // rank 1 expects 200
      RS_RETURN_IF_ERROR(comm.Send(buffer.data(), 300, 1));   // rank 1 expects 200
      RS_RETURN_IF_ERROR(comm.Send(buffer.data(), 4000, 1));  // matches
    } else {
      absl::Status shorter = comm.Recv(buffer.data(), 200, 0);
      RS_RETURN_IF_ERROR(
          Expect(shorter.code() == absl::StatusCode::kInvalidArgument, shorter.ToString()));
      RS_RETURN_IF_ERROR(Expect(absl::StrContains(shorter.message(), "rank 0 sent 100 bytes") &&
                                    absl::StrContains(shorter.message(), "expected 200"),
                                shorter.ToString()));
      absl::Status longer = comm.Recv(buffer.data(), 200, 0);
      RS_RETURN_IF_ERROR(
          Expect(longer.code() == absl::StatusCode::kInvalidArgument, longer.ToString()));
      RS_RETURN_IF_ERROR(Expect(absl::StrContains(longer.message(), "more than the 200 bytes"),
                                longer.ToString()));
      RS_RETURN_IF_ERROR(comm.Recv(buffer.data(), 4000, 0));
    }
    return comm.Barrier();
  });
}

TEST(UcxFailureTest, CollectiveSizeMismatchFailsEveryRank) {
  RunTwoRanks(UcxOptions{}, [](Communicator& comm) -> absl::Status {
    std::vector<float> data(64, 1.0f);
    // Rank 1 passes a larger count than rank 0.
    const absl::Status status = comm.AllReduceSum(data.data(), comm.rank() == 0 ? 32 : 64);
    RS_RETURN_IF_ERROR(Expect(status.code() == absl::StatusCode::kInvalidArgument ||
                                  status.code() == absl::StatusCode::kUnavailable,
                              status.ToString()));
    RS_RETURN_IF_ERROR(
        Expect(absl::StrContains(status.message(), "size mismatch"), status.ToString()));
    return Expect(comm.Barrier() == status, "the failure is sticky");
  });
}

}  // namespace
}  // namespace rackserve::comm
