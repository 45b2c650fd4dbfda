// The UCX communicator between real processes on this machine (one forked child per rank, a
// FileRendezvous in a fresh directory), over TCP and over UCX's default transports (shared
// memory): collectives against references computed in the same order (bitwise), point-to-point
// ordering, asynchronous transfers, size mismatches, bad arguments, Abort and timeouts.
#include "runtime/comm/ucx_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/file_rendezvous.h"
#include "tests/comm/rank_processes.h"

namespace rackserve::comm {
namespace {

using ::rackserve::comm::testing::Expect;
using ::rackserve::comm::testing::RankProcesses;
using ::rackserve::comm::testing::SharedArray;
using ::rackserve::comm::testing::TempDir;
using ::rackserve::comm::testing::TestWorld;
using ::testing::Each;
using ::testing::ElementsAre;

constexpr absl::Duration kTestTimeout = absl::Seconds(25);

absl::StatusOr<std::unique_ptr<Communicator>> Connect(const std::string& dir, int size, int rank,
                                                      const UcxOptions& options) {
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir);
  return CreateUcxCommunicator(TestWorld(size, "ucx-communicator-test"), rank, *rendezvous,
                               options);
}

// Rank r's input for a collective: fresh normal floats from (seed, r, count).
std::vector<float> Input(uint64_t seed, int rank, int64_t count) {
  std::mt19937_64 rng(seed + 1'000'003 * static_cast<uint64_t>(rank) +
                      static_cast<uint64_t>(count));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(count);
  for (float& v : x) v = normal(rng);
  return x;
}

std::vector<uint8_t> Bytes(uint64_t seed, int64_t n) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> b(n);
  for (uint8_t& v : b) v = static_cast<uint8_t>(rng());
  return b;
}

struct Transport {
  const char* name;
  const char* tls;  // UcxOptions::transports
};

struct CollectiveCase {
  int size;
  Transport transport;
};

class UcxCollectivesTest : public ::testing::TestWithParam<CollectiveCase> {
 protected:
  UcxOptions Options() const {
    UcxOptions options;
    options.transports = GetParam().transport.tls;
    options.timeout = absl::Seconds(15);
    return options;
  }

  // Runs body(comm) on every rank; expects every rank to succeed.
  void RunOnAllRanks(const std::function<absl::Status(Communicator&)>& body) {
    const int size = GetParam().size;
    TempDir dir;
    const UcxOptions options = Options();
    RankProcesses ranks(size, [&](int rank) -> absl::Status {
      RS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                          Connect(dir.path(), size, rank, options));
      RS_RETURN_IF_ERROR(Expect(comm->rank() == rank && comm->size() == size, "rank/size"));
      return body(*comm);
    });
    EXPECT_THAT(ranks.Wait(kTestTimeout), Each(0));
  }

  const uint64_t seed_ = std::random_device()();
};

TEST_P(UcxCollectivesTest, AllReduceSumIsTheRankOrderSumBitwiseOnEveryRank) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed_);
  const uint64_t seed = seed_;
  RunOnAllRanks([seed](Communicator& comm) -> absl::Status {
    // Small (gather to 0) and large (reduce-scatter) paths, sizes not divisible by the group.
    for (int64_t count : {0, 1, 5, 1000, 8192, 8193, 100'003, 1 << 20}) {
      std::vector<float> data = Input(seed, comm.rank(), count);
      RS_RETURN_IF_ERROR(comm.AllReduceSum(data.data(), count));
      std::vector<float> want = Input(seed, 0, count);
      std::vector<double> exact(want.begin(), want.end());
      for (int r = 1; r < comm.size(); ++r) {
        const std::vector<float> x = Input(seed, r, count);
        for (int64_t i = 0; i < count; ++i) {
          want[i] += x[i];
          exact[i] += x[i];
        }
      }
      RS_RETURN_IF_ERROR(
          Expect(std::memcmp(data.data(), want.data(), count * sizeof(float)) == 0,
                 absl::StrCat("AllReduceSum of ", count, " differs from the rank-order sum")));
      double err = 0, norm = 0;
      for (int64_t i = 0; i < count; ++i) {
        err += (data[i] - exact[i]) * (data[i] - exact[i]);
        norm += exact[i] * exact[i];
      }
      RS_RETURN_IF_ERROR(Expect(
          count == 0 || std::sqrt(err / norm) < 1e-6,
          absl::StrCat("AllReduceSum of ", count, " normalized error ", std::sqrt(err / norm))));
    }
    return absl::OkStatus();
  });
}

TEST_P(UcxCollectivesTest, AllGatherPlacesEachRanksBlock) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed_);
  const uint64_t seed = seed_;
  RunOnAllRanks([seed](Communicator& comm) -> absl::Status {
    for (int64_t count : {0, 3, 50'000}) {
      const std::vector<float> in = Input(seed, comm.rank(), count);
      std::vector<float> out(comm.size() * count, NAN);
      RS_RETURN_IF_ERROR(comm.AllGather(in.data(), count, out.data()));
      for (int r = 0; r < comm.size(); ++r) {
        const std::vector<float> want = Input(seed, r, count);
        RS_RETURN_IF_ERROR(
            Expect(std::memcmp(out.data() + r * count, want.data(), count * sizeof(float)) == 0,
                   absl::StrCat("AllGather of ", count, ": block ", r, " differs")));
      }
      // In place: this rank's block already sits in `out`.
      std::vector<float> in_place(comm.size() * count, NAN);
      std::copy(in.begin(), in.end(), in_place.begin() + comm.rank() * count);
      RS_RETURN_IF_ERROR(
          comm.AllGather(in_place.data() + comm.rank() * count, count, in_place.data()));
      RS_RETURN_IF_ERROR(
          Expect(std::memcmp(in_place.data(), out.data(), out.size() * sizeof(float)) == 0,
                 "in-place AllGather differs"));
    }
    return absl::OkStatus();
  });
}

TEST_P(UcxCollectivesTest, BroadcastFromEveryRoot) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed_);
  const uint64_t seed = seed_;
  RunOnAllRanks([seed](Communicator& comm) -> absl::Status {
    for (int root = 0; root < comm.size(); ++root) {
      for (int64_t bytes : {0, 1, 1000, 3 << 20}) {
        const std::vector<uint8_t> want = Bytes(seed + root + bytes, bytes);
        std::vector<uint8_t> data = comm.rank() == root ? want : std::vector<uint8_t>(bytes, 0);
        RS_RETURN_IF_ERROR(comm.Broadcast(data.data(), bytes, root));
        RS_RETURN_IF_ERROR(
            Expect(data == want, absl::StrCat("Broadcast of ", bytes, " bytes from root ", root)));
      }
    }
    return absl::OkStatus();
  });
}

TEST_P(UcxCollectivesTest, BarrierWaitsForTheLastRank) {
  SharedArray<std::atomic<int>> arrived(1);
  RunOnAllRanks([&arrived](Communicator& comm) -> absl::Status {
    for (int round = 1; round <= 3; ++round) {
      // The last rank arrives late; nobody may leave before it has arrived.
      if (comm.rank() == comm.size() - 1) absl::SleepFor(absl::Milliseconds(100));
      arrived[0].fetch_add(1);
      RS_RETURN_IF_ERROR(comm.Barrier());
      RS_RETURN_IF_ERROR(Expect(arrived[0].load() >= round * comm.size(),
                                absl::StrCat("left barrier ", round, " early")));
      RS_RETURN_IF_ERROR(comm.Barrier());
    }
    return absl::OkStatus();
  });
}

TEST_P(UcxCollectivesTest, PointToPointMessagesArriveInOrder) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed_);
  const uint64_t seed = seed_;
  RunOnAllRanks([seed](Communicator& comm) -> absl::Status {
    const int next = (comm.rank() + 1) % comm.size();
    const int prev = (comm.rank() + comm.size() - 1) % comm.size();
    // Eager and rendezvous sizes, in a ring: send asynchronously, receive blocking.
    const std::vector<int64_t> sizes = {1, 100, 70'000, 3 << 20, 0, 17};
    std::vector<std::vector<uint8_t>> out;
    std::vector<std::unique_ptr<Communicator::Pending>> sends;
    for (size_t m = 0; m < sizes.size(); ++m) {
      out.push_back(Bytes(seed + 100 * comm.rank() + m, sizes[m]));
      RS_ASSIGN_OR_RETURN(auto pending, comm.SendAsync(out.back().data(), sizes[m], next));
      sends.push_back(std::move(pending));
    }
    for (size_t m = 0; m < sizes.size(); ++m) {
      std::vector<uint8_t> in(sizes[m]);
      RS_RETURN_IF_ERROR(comm.Recv(in.data(), sizes[m], prev));
      RS_RETURN_IF_ERROR(Expect(in == Bytes(seed + 100 * prev + m, sizes[m]),
                                absl::StrCat("message ", m, " from rank ", prev)));
    }
    for (auto& pending : sends) RS_RETURN_IF_ERROR(pending->Wait());
    RS_RETURN_IF_ERROR(sends[0]->Wait());  // waiting again returns the same result
    return absl::OkStatus();
  });
}

TEST_P(UcxCollectivesTest, AsyncReceivesPostedFirstAndWaitedOutOfOrder) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed_);
  const uint64_t seed = seed_;
  RunOnAllRanks([seed](Communicator& comm) -> absl::Status {
    // Pairs (0, 1), (2, 3): the even rank receives three messages posted before the odd rank
    // sends, waits for them in reverse; then the odd rank receives blocking sends.
    const int partner = comm.rank() ^ 1;
    const std::vector<int64_t> sizes = {4000, 2 << 20, 8};
    if (comm.rank() % 2 == 0) {
      std::vector<std::vector<uint8_t>> in;
      for (int64_t n : sizes) in.emplace_back(n);
      std::vector<std::unique_ptr<Communicator::Pending>> recvs;
      for (size_t m = 0; m < sizes.size(); ++m) {
        RS_ASSIGN_OR_RETURN(auto pending, comm.RecvAsync(in[m].data(), sizes[m], partner));
        recvs.push_back(std::move(pending));
      }
      RS_RETURN_IF_ERROR(comm.Barrier());  // collectives progress while p2p is pending
      for (size_t m = sizes.size(); m-- > 0;) {
        RS_RETURN_IF_ERROR(recvs[m]->Wait());
        RS_RETURN_IF_ERROR(Expect(in[m] == Bytes(seed + m, sizes[m]), absl::StrCat("message ", m)));
      }
      for (size_t m = 0; m < sizes.size(); ++m) {
        const std::vector<uint8_t> reply = Bytes(seed + 10 + m, sizes[m]);
        RS_RETURN_IF_ERROR(comm.Send(reply.data(), sizes[m], partner));
      }
    } else {
      RS_RETURN_IF_ERROR(comm.Barrier());
      for (size_t m = 0; m < sizes.size(); ++m) {
        const std::vector<uint8_t> message = Bytes(seed + m, sizes[m]);
        RS_RETURN_IF_ERROR(comm.Send(message.data(), sizes[m], partner));
      }
      for (size_t m = 0; m < sizes.size(); ++m) {
        std::vector<uint8_t> reply(sizes[m]);
        RS_RETURN_IF_ERROR(comm.Recv(reply.data(), sizes[m], partner));
        RS_RETURN_IF_ERROR(Expect(reply == Bytes(seed + 10 + m, sizes[m]), "reply"));
      }
    }
    return comm.Barrier();
  });
}

INSTANTIATE_TEST_SUITE_P(SizesAndTransports, UcxCollectivesTest,
                         ::testing::Values(CollectiveCase{2, {"tcp", "tcp"}},
                                           CollectiveCase{4, {"tcp", "tcp"}},
                                           CollectiveCase{2, {"shm", ""}},
                                           CollectiveCase{4, {"shm", ""}}),
                         [](const ::testing::TestParamInfo<CollectiveCase>& info) {
                           return absl::StrCat(info.param.transport.name, info.param.size);
                         });

}  // namespace
}  // namespace rackserve::comm
