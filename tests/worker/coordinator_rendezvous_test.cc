// CoordinatorRendezvous against the coordinator's real RendezvousService over gRPC: UCX
// communicators of a TP2 x PP2 world (and its per-stage TP groups) form through it and work;
// a mismatching world and an unknown replica come back with the coordinator's code and message;
// an unreachable coordinator is UNAVAILABLE.
#include "worker/coordinator_rendezvous.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/rendezvous_service.h"
#include "coordinator/topology.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "runtime/comm/ucx_communicator.h"

namespace rackserve::worker {
namespace {

using ::testing::HasSubstr;

constexpr char kTopology[] = R"(model: /models/tiny
vms:
  - {name: vm0, devices: 4}
replicas:
  - {id: r0, tp: 2, pp: 2, ranks: [{vm: vm0, device: 0}, {vm: vm0, device: 1},
                                   {vm: vm0, device: 2}, {vm: vm0, device: 3}]}
)";

class CoordinatorRendezvousTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto topology = coordinator::Topology::Parse(kTopology, "rack.yaml");
    ASSERT_TRUE(topology.ok()) << topology.status();
    topology_ = std::make_unique<coordinator::Topology>(*std::move(topology));
    service_ = std::make_unique<coordinator::RendezvousServiceImpl>(topology_.get());
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

  static comm::WorldSpec World(int size, std::string layout) {
    comm::WorldSpec world;
    world.size = size;
    world.layout = std::move(layout);
    world.model = "/models/tiny";
    return world;
  }

  std::unique_ptr<coordinator::Topology> topology_;
  std::unique_ptr<coordinator::RendezvousServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(CoordinatorRendezvousTest, WorldAndStageGroupsConnectAndReduce) {
  constexpr int kTp = 2, kPp = 2;
  std::vector<absl::Status> results(kTp * kPp);
  std::vector<float> sums(kTp * kPp), stage_sums(kTp * kPp);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kTp * kPp; ++r) {
    ranks.emplace_back([&, r] {
      results[r] = [&]() -> absl::Status {
        comm::UcxOptions options;
        options.timeout = absl::Seconds(20);
        options.connect_timeout = absl::Seconds(20);
        CoordinatorRendezvous world_rendezvous(channel_, "w0", "r0", /*round=*/0);
        auto world =
            comm::CreateUcxCommunicator(World(kTp * kPp, "tp2-pp2"), r, world_rendezvous, options);
        if (!world.ok()) return world.status();
        const int stage = r / kTp;
        CoordinatorRendezvous stage_rendezvous(channel_, "w0", absl::StrCat("r0/tp-stage", stage),
                                               /*round=*/0);
        auto tp = comm::CreateUcxCommunicator(World(kTp, absl::StrCat("tp2-pp2-stage", stage)),
                                              r % kTp, stage_rendezvous, options);
        if (!tp.ok()) return tp.status();
        sums[r] = static_cast<float>(r + 1);
        if (absl::Status s = (*world)->AllReduceSum(&sums[r], 1); !s.ok()) return s;
        stage_sums[r] = static_cast<float>(r + 1);
        return (*tp)->AllReduceSum(&stage_sums[r], 1);
      }();
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int r = 0; r < kTp * kPp; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r];
    EXPECT_EQ(sums[r], 10.0f);
    EXPECT_EQ(stage_sums[r], r < kTp ? 3.0f : 7.0f);
  }
  EXPECT_EQ(service_->groups_held(), 0);
}

TEST_F(CoordinatorRendezvousTest, CoordinatorErrorsComeBackWithTheirCode) {
  std::thread first([&] {
    CoordinatorRendezvous rendezvous(channel_, "w0", "r0", 0);
    const auto s = rendezvous.Exchange(World(2, "tp2-pp1"), 0, "a", absl::Seconds(1)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_THAT(s.message(), HasSubstr("ranks [1]"));
  });
  for (absl::Time until = absl::Now() + absl::Seconds(5);
       service_->groups_held() == 0 && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  CoordinatorRendezvous rendezvous(channel_, "w1", "r0", 0);
  absl::Status s = rendezvous.Exchange(World(2, "tp1-pp2"), 1, "b", absl::Seconds(1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("layout"));
  EXPECT_THAT(s.message(), HasSubstr("rendezvous of 'r0' round 0 (rank 1)"));
  first.join();

  CoordinatorRendezvous unknown(channel_, "w0", "r7", 0);
  s = unknown.Exchange(World(2, "tp2-pp1"), 0, "a", absl::Seconds(1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("'r7'"));
}

TEST_F(CoordinatorRendezvousTest, UnreachableCoordinatorIsUnavailable) {
  server_->Shutdown();
  server_.reset();
  CoordinatorRendezvous rendezvous(channel_, "w0", "r0", 0);
  const absl::Status s =
      rendezvous.Exchange(World(2, "tp2-pp1"), 0, "a", absl::Milliseconds(200)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("rendezvous of 'r0'"));
}

}  // namespace
}  // namespace rackserve::worker
