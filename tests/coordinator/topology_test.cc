#include "coordinator/topology.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

TEST(TopologyTest, LayoutPlacesReplicasOverAllDevicesInOrder) {
  auto t = Topology::Parse(R"(
model: /models/tiny
vms:
  - {name: vm0, devices: 4}
  - {name: vm1, devices: 4}
layout: {tp: 2, pp: 1}
)",
                           "rack.yaml");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->model(), "/models/tiny");
  ASSERT_EQ(t->replicas().size(), 4u);
  EXPECT_EQ(t->replicas()[2].id, "r2");
  EXPECT_EQ(t->replicas()[2].ranks[0].vm, "vm1");
  EXPECT_EQ(t->replicas()[2].ranks[1].device, 1);
  const auto assignments = t->AssignmentsFor("vm1");
  ASSERT_EQ(assignments.size(), 2u);
  EXPECT_EQ(assignments[0].replica_id, "r2");
  EXPECT_TRUE(assignments[0].leader_here);
}

TEST(TopologyTest, ExplicitReplicasMaySpanVms) {
  auto t = Topology::Parse(R"(
model: m
vms: [{name: a, devices: 1}, {name: b, devices: 1}]
replicas:
  - {id: big, tp: 2, pp: 1, ranks: [{vm: a, device: 0}, {vm: b, device: 0}]}
)",
                           "rack.yaml");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->AssignmentsFor("b").size(), 1u);
  EXPECT_FALSE(t->AssignmentsFor("b")[0].leader_here);
  EXPECT_TRUE(t->AssignmentsFor("a")[0].leader_here);
  EXPECT_NE(t->FindReplica("big"), nullptr);
  EXPECT_EQ(t->FindVm("c"), nullptr);
}

struct BadCase {
  std::string yaml;
  std::string expected;  // file:line: field
};

TEST(TopologyTest, ErrorsNameFileLineAndField) {
  const BadCase cases[] = {
      {"model: m\nvms:\n  - {name: vm0, devices: 0}\nlayout: {tp: 1, pp: 1}\n",
       "rack.yaml:3: vms[0].devices: must be >= 1, got 0"},
      {"model: m\nvms:\n  - {name: vm0, devices: 4}\nlayout: {tp: 3, pp: 1}\n",
       "rack.yaml:4: layout: tp * pp = 3 does not divide"},
      {"vms:\n  - {name: vm0, devices: 4}\nlayout: {tp: 1, pp: 1}\n",
       "rack.yaml:1: model: missing"},
      {"model: m\nvms:\n  - {name: vm0, devices: x}\nlayout: {tp: 1, pp: 1}\n",
       "rack.yaml:3: vms[0].devices: must be an integer"},
      {"model: m\nvms:\n  - {name: vm0, devices: 2}\n  - {name: vm0, devices: 2}\n"
       "layout: {tp: 1, pp: 1}\n",
       "rack.yaml:4: vms[1].name: duplicate VM"},
      {"model: m\nvms:\n  - {name: vm0, devices: 2}\nreplicas:\n"
       "  - {id: r0, tp: 1, pp: 1, ranks: [{vm: vm0, device: 0}]}\n"
       "  - {id: r1, tp: 1, pp: 1, ranks: [{vm: vm9, device: 0}]}\n",
       "rack.yaml:6: replicas[1].ranks[0].vm: unknown VM \"vm9\""},
      {"model: m\nvms:\n  - {name: vm0, devices: 2}\nreplicas:\n"
       "  - {id: r0, tp: 1, pp: 1, ranks: [{vm: vm0, device: 2}]}\n",
       "rack.yaml:5: replicas[0].ranks[0].device: device 2 out of range"},
      {"model: m\nvms:\n  - {name: vm0, devices: 2}\nreplicas:\n"
       "  - {id: r0, tp: 1, pp: 1, ranks: [{vm: vm0, device: 1}]}\n"
       "  - {id: r1, tp: 1, pp: 1, ranks: [{vm: vm0, device: 1}]}\n",
       "rack.yaml:6: replicas[1].ranks[0].device: device vm0/1 used twice"},
      {"model: m\nvms:\n  - {name: vm0, devices: 2}\nreplicas:\n"
       "  - {id: r0, tp: 2, pp: 1, ranks: [{vm: vm0, device: 1}]}\n",
       "rack.yaml:5: replicas[0].ranks: must list tp * pp = 2 ranks"},
      {"model: m\nvms:\n  - {name: vm0, devices: 2}\n", "layout/replicas: give exactly one"},
      {"model: m\nvms: [\n", "rack.yaml:3: malformed YAML"},
  };
  for (const BadCase& c : cases) {
    auto t = Topology::Parse(c.yaml, "rack.yaml");
    ASSERT_FALSE(t.ok()) << c.yaml;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.expected)) << c.yaml;
  }
}

TEST(TopologyTest, MissingFileIsNotFound) {
  auto t = Topology::LoadFile("/nonexistent/rack.yaml");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("/nonexistent/rack.yaml"));
}

}  // namespace
}  // namespace rackserve::coordinator
