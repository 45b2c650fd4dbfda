// A one-rank UCX communicator in this process: every operation is local, arguments are
// validated before anything is sent, and Abort() fails it for good. Also bad options.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "runtime/comm/file_rendezvous.h"
#include "runtime/comm/ucx_communicator.h"
#include "tests/comm/rank_processes.h"

namespace rackserve::comm {
namespace {

using ::rackserve::comm::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class UcxSingleRankTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir_.path());
    WorldSpec world;
    world.layout = "tp1";
    world.model = "m";
    absl::StatusOr<std::unique_ptr<Communicator>> comm =
        CreateUcxCommunicator(world, 0, *rendezvous, UcxOptions{});
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = *std::move(comm);
  }

  void ExpectInvalid(const absl::Status& s, const std::string& needle) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr(needle));
  }

  TempDir dir_;
  std::unique_ptr<Communicator> comm_;
};

TEST_F(UcxSingleRankTest, CollectivesAreLocal) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->size(), 1);
  std::vector<float> data = {1.5f, -2.0f};
  ASSERT_TRUE(comm_->AllReduceSum(data.data(), 2).ok());
  EXPECT_THAT(data, ElementsAre(1.5f, -2.0f));
  std::vector<float> out(2);
  ASSERT_TRUE(comm_->AllGather(data.data(), 2, out.data()).ok());
  EXPECT_THAT(out, ElementsAre(1.5f, -2.0f));
  ASSERT_TRUE(comm_->Broadcast(data.data(), 8, 0).ok());
  ASSERT_TRUE(comm_->Barrier().ok());
}

TEST_F(UcxSingleRankTest, BadArgumentsAreInvalidArgumentNamingTheCulprit) {
  float x[4] = {};
  char byte = 0;
  ExpectInvalid(comm_->AllReduceSum(x, -1), "count -1");
  ExpectInvalid(comm_->AllReduceSum(nullptr, 4), "null buffer");
  ExpectInvalid(comm_->AllGather(x, 2, x + 1), "overlaps");
  ExpectInvalid(comm_->Broadcast(x, 4, 1), "root 1");
  ExpectInvalid(comm_->Broadcast(x, -4, 0), "bytes -4");
  ExpectInvalid(comm_->Send(&byte, 1, 0), "peer 0");  // itself
  ExpectInvalid(comm_->Recv(&byte, 1, 1), "peer 1");
  ExpectInvalid(comm_->SendAsync(&byte, 1, -1).status(), "peer -1");
  ExpectInvalid(comm_->RecvAsync(nullptr, 1, 0).status(), "null buffer");
  EXPECT_TRUE(comm_->Barrier().ok());  // bad arguments do not fail the communicator
}

TEST_F(UcxSingleRankTest, AbortFailsEveryLaterCallWithTheReason) {
  std::thread([this] { comm_->Abort(absl::CancelledError("shutting down")); }).join();
  const absl::Status s = comm_->Barrier();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(s.message(), HasSubstr("shutting down"));
  float x = 0;
  EXPECT_EQ(comm_->AllReduceSum(&x, 1), s);
  comm_->Abort(absl::InternalError("second reason"));  // the first failure stays
  EXPECT_EQ(comm_->Broadcast(&x, 4, 0), s);
}

TEST(UcxOptionsTest, NonPositiveDurationsAreInvalidArgument) {
  TempDir dir;
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir.path());
  WorldSpec world;
  UcxOptions options;
  options.peer_failure_timeout = absl::ZeroDuration();
  const auto comm = CreateUcxCommunicator(world, 0, *rendezvous, options);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(comm.status().message(), HasSubstr("peer_failure_timeout"));
  const auto bad_rank = CreateUcxCommunicator(world, 1, *rendezvous, UcxOptions{});
  EXPECT_EQ(bad_rank.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_rank.status().message(), HasSubstr("rank 1"));
}

}  // namespace
}  // namespace rackserve::comm
