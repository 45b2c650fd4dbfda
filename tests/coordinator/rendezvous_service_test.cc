// RendezvousService over real gRPC on loopback: ranks of a group exchange blobs, mismatching
// worlds, bad ranks, duplicates, timeouts, rounds and unknown replicas are refused with the right
// code and a message naming the culprit, and finished or superseded groups are freed.
#include "coordinator/rendezvous_service.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/wire_conversion.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr char kTopology[] = R"(model: /models/tiny
vms:
  - {name: vm0, devices: 2}
  - {name: vm1, devices: 2}
replicas:
  - {id: r0, tp: 2, pp: 1, ranks: [{vm: vm0, device: 0}, {vm: vm1, device: 0}]}
  - {id: r1, tp: 1, pp: 2, ranks: [{vm: vm0, device: 1}, {vm: vm1, device: 1}]}
)";

class RendezvousServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Topology> topology = Topology::Parse(kTopology, "rack.yaml");
    ASSERT_TRUE(topology.ok()) << topology.status();
    topology_ = std::make_unique<Topology>(*std::move(topology));
    service_ = std::make_unique<RendezvousServiceImpl>(topology_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  static v1::RendezvousRequest Request(std::string replica, int rank, int size = 2,
                                       double timeout_s = 10, int64_t round = 0) {
    v1::RendezvousRequest r;
    r.set_worker_id("w-test");
    r.set_replica_id(std::move(replica));
    r.set_rank(rank);
    r.set_world_size(size);
    r.set_layout(absl::StrCat("tp", size, "-pp1"));
    r.set_model("/models/tiny");
    r.set_world_protocol_version(1);
    r.set_blob(absl::StrCat("blob-of-rank-", rank));
    r.set_timeout_seconds(timeout_s);
    r.set_round(round);
    return r;
  }

  // One Exchange call; the blobs on success.
  absl::StatusOr<std::vector<std::string>> Call(const v1::RendezvousRequest& request) {
    auto stub = v1::RendezvousService::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::RendezvousResponse response;
    const grpc::Status status = stub->Exchange(&context, request, &response);
    if (!status.ok()) return wire::FromGrpcStatus(status);
    return std::vector<std::string>(response.blobs().begin(), response.blobs().end());
  }

  // Waits until the service holds `n` groups.
  void WaitGroups(int64_t n) {
    for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
      if (service_->groups_held() == n) return;
      absl::SleepFor(absl::Milliseconds(5));
    }
    FAIL() << "groups held: " << service_->groups_held() << ", want " << n;
  }

  std::unique_ptr<Topology> topology_;
  std::unique_ptr<RendezvousServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RendezvousServiceTest, EveryRankGetsEveryBlobAndTheGroupIsFreed) {
  constexpr int kSize = 4;
  std::vector<absl::StatusOr<std::vector<std::string>>> results(kSize);
  std::vector<std::thread> ranks;
  for (int r = kSize - 1; r >= 0; --r) {  // the last rank first: order does not matter
    ranks.emplace_back([&, r] { results[r] = Call(Request("r0/tp-stage0", r, kSize)); });
  }
  for (std::thread& t : ranks) t.join();
  for (int r = 0; r < kSize; ++r) {
    ASSERT_TRUE(results[r].ok()) << results[r].status();
    ASSERT_EQ(results[r]->size(), kSize);
    for (int peer = 0; peer < kSize; ++peer) {
      EXPECT_EQ((*results[r])[peer], absl::StrCat("blob-of-rank-", peer));
    }
  }
  EXPECT_EQ(service_->groups_held(), 0);
}

TEST_F(RendezvousServiceTest, GroupsOfOneReplicaAreSeparate) {
  std::vector<absl::StatusOr<std::vector<std::string>>> results(4);
  std::vector<std::thread> ranks;
  for (int i = 0; i < 4; ++i) {
    ranks.emplace_back([&, i] {
      v1::RendezvousRequest r = Request(i < 2 ? "r1" : "r1/tp-stage0", i % 2);
      r.set_blob(absl::StrCat("g", i / 2, "-rank", i % 2));
      results[i] = Call(r);
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_THAT(*results[i], ::testing::ElementsAre(absl::StrCat("g", i / 2, "-rank0"),
                                                    absl::StrCat("g", i / 2, "-rank1")));
  }
}

TEST_F(RendezvousServiceTest, MismatchingWorldIsRefusedNamingTheField) {
  std::thread first([&] {
    const auto s = Call(Request("r0", 0, 2, /*timeout_s=*/1)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  });
  WaitGroups(1);
  v1::RendezvousRequest other = Request("r0", 1);
  other.set_layout("tp1-pp2");
  absl::Status s = Call(other).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("layout"));
  other = Request("r0", 1);
  other.set_model("/models/other");
  s = Call(other).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("model"));
  other = Request("r0", 1);
  other.set_world_protocol_version(2);
  s = Call(other).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("protocol_version"));
  first.join();
}

TEST_F(RendezvousServiceTest, BadRankAndDuplicateAreInvalidArguments) {
  absl::Status s = Call(Request("r0", 2)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("rank"));
  EXPECT_THAT(s.message(), HasSubstr("2"));
  s = Call(Request("r0", -1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  std::thread first([&] { EXPECT_FALSE(Call(Request("r0", 0, 2, /*timeout_s=*/1)).ok()); });
  WaitGroups(1);
  s = Call(Request("r0", 0)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("rank 0 has already published"));
  first.join();

  s = Call(Request("r0", 0, 2, /*timeout_s=*/0)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("timeout_seconds"));
}

TEST_F(RendezvousServiceTest, TimeoutNamesTheMissingRanksAndWithdraws) {
  const absl::Time start = absl::Now();
  absl::Status s = Call(Request("r0", 1, 3, /*timeout_s=*/0.3)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("ranks [0, 2]"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(service_->groups_held(), 0);
  // Withdrawn: the same rank may publish again.
  std::thread late([&] { EXPECT_TRUE(Call(Request("r0", 1)).ok()); });
  EXPECT_TRUE(Call(Request("r0", 0)).ok());
  late.join();
}

TEST_F(RendezvousServiceTest, NewerRoundSupersedesOlderOnes) {
  std::thread waiting([&] {
    const absl::Status s = Call(Request("r0", 0, 2, /*timeout_s=*/10, /*round=*/0)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(s.message(), HasSubstr("superseded by round 1"));
  });
  WaitGroups(1);
  std::thread newer([&] { EXPECT_TRUE(Call(Request("r0", 0, 2, 10, /*round=*/1)).ok()); });
  waiting.join();
  EXPECT_TRUE(Call(Request("r0", 1, 2, 10, /*round=*/1)).ok());
  newer.join();
  const absl::Status s = Call(Request("r0", 1, 2, 10, /*round=*/0)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("round 0 is older than the replica's newest (1)"));
  EXPECT_EQ(service_->groups_held(), 0);
}

TEST_F(RendezvousServiceTest, UnknownReplicaIsNotFound) {
  absl::Status s = Call(Request("r9", 0)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("'r9'"));
  s = Call(Request("r9/tp-stage0", 0)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

}  // namespace
}  // namespace rackserve::coordinator
