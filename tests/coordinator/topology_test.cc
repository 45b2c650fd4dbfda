#include "coordinator/topology.h"

#include <filesystem>
#include <map>
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
      {"model: m\nvms:\n  - {name: vm0, devices: 4}\nlayouts:\n  tp1: {tp: 1, pp: 1}\n"
       "  tp3: {tp: 3, pp: 1}\nlayout: tp1\n",
       "rack.yaml:6: layouts.tp3: tp * pp = 3 does not divide"},
      {"model: m\nvms:\n  - {name: vm0, devices: 4}\nlayouts:\n  tp1: {tp: 1, pp: x}\n"
       "layout: tp1\n",
       "rack.yaml:5: layouts.tp1.pp: must be an integer"},
      {"model: m\nvms:\n  - {name: vm0, devices: 4}\nlayouts:\n  tp1: {tp: 1, pp: 1}\n"
       "layout: tp2\n",
       "rack.yaml:6: layout: unknown layout \"tp2\"; known: tp1"},
      {"model: m\nvms:\n  - {name: vm0, devices: 4}\nlayouts: [tp1]\nlayout: tp1\n",
       "rack.yaml:4: layouts: must be a non-empty mapping"},
  };
  for (const BadCase& c : cases) {
    auto t = Topology::Parse(c.yaml, "rack.yaml");
    ASSERT_FALSE(t.ok()) << c.yaml;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.expected)) << c.yaml;
  }
}

// deploy/topologies/, found from this source file's path. The build may name it relative to the
// build directory, which is three levels above this test's binary (<build>/tests/coordinator/).
std::string TopologyFile(const std::string& name) {
  std::filesystem::path source(__FILE__);
  if (source.is_relative()) {
    const std::filesystem::path binary = std::filesystem::canonical("/proc/self/exe");
    source = binary.parent_path().parent_path().parent_path() / source;
  }
  return (source.parent_path().parent_path().parent_path() / "deploy" / "topologies" / name)
      .string();
}

TEST(TopologyTest, Gb300Nvl72LayoutsGiveTheirReplicaCounts) {
  const std::map<std::string, size_t> expected = {{"tp1", 72}, {"tp4", 18}, {"tp4-pp2", 9}};
  for (const auto& [layout, replicas] : expected) {
    auto t = Topology::LoadFile(TopologyFile("gb300-nvl72.yaml"), {.layout = layout});
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->vms().size(), 18u);
    EXPECT_EQ(t->vms().front().name, "vm00");
    EXPECT_EQ(t->vms().back().name, "vm17");
    EXPECT_EQ(t->layout_name(), layout);
    EXPECT_EQ(t->replicas().size(), replicas) << layout;
    for (const VmSpec& vm : t->vms()) EXPECT_EQ(vm.devices, 4);
  }
  // The default layout is tp1; a TP 4 x PP 2 replica spans two VMs, led from the first.
  auto tp1 = Topology::LoadFile(TopologyFile("gb300-nvl72.yaml"));
  ASSERT_TRUE(tp1.ok()) << tp1.status();
  EXPECT_EQ(tp1->layout_name(), "tp1");
  EXPECT_EQ(tp1->replicas().size(), 72u);
  auto tp4pp2 = Topology::LoadFile(TopologyFile("gb300-nvl72.yaml"), {.layout = "tp4-pp2"});
  ASSERT_TRUE(tp4pp2.ok()) << tp4pp2.status();
  const ReplicaSpec& last = tp4pp2->replicas().back();
  EXPECT_EQ(last.tp, 4);
  EXPECT_EQ(last.pp, 2);
  EXPECT_EQ(last.ranks.front().vm, "vm16");
  EXPECT_EQ(last.ranks.back().vm, "vm17");
  EXPECT_EQ(last.ranks.back().device, 3);
  ASSERT_EQ(tp4pp2->AssignmentsFor("vm17").size(), 1u);
  EXPECT_FALSE(tp4pp2->AssignmentsFor("vm17")[0].leader_here);
}

TEST(TopologyTest, Local18HasOneReplicaPerWorker) {
  auto t = Topology::LoadFile(TopologyFile("local-18.yaml"), {.model = "/tmp/model"});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->model(), "/tmp/model");
  ASSERT_EQ(t->vms().size(), 18u);
  EXPECT_EQ(t->replicas().size(), 18u);
  for (size_t i = 0; i < t->vms().size(); ++i) {
    EXPECT_EQ(t->vms()[i].devices, 1);
    EXPECT_EQ(t->replicas()[i].ranks.front().vm, t->vms()[i].name);
  }
}

TEST(TopologyTest, NamedLayoutsAndOverrides) {
  const std::string yaml = R"(model: m
vms: [{name: a, devices: 2}, {name: b, devices: 2}]
layouts:
  one: {tp: 1, pp: 1}
  pair: {tp: 2, pp: 1}
layout: pair
)";
  auto t = Topology::Parse(yaml, "rack.yaml");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->layout_name(), "pair");
  EXPECT_EQ(t->replicas().size(), 2u);
  auto one = Topology::Parse(yaml, "rack.yaml", {.layout = "one"});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->replicas().size(), 4u);

  auto unknown = Topology::Parse(yaml, "rack.yaml", {.layout = "quad"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("rack.yaml:4: layouts: unknown layout \"quad\"; known: one, pair"));
  // An inline layout in the file still works, and no layouts means no names to choose from.
  auto inline_layout =
      Topology::Parse("model: m\nvms: [{name: a, devices: 2}]\nlayout: {tp: 2, pp: 1}\n",
                      "rack.yaml", {.layout = "tp1"});
  EXPECT_EQ(inline_layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(inline_layout.status().message()),
              HasSubstr("rack.yaml:1: layouts: no `layouts` in the file to find \"tp1\" in"));
  // Without a model in the file, the override supplies it.
  auto model = Topology::Parse("vms: [{name: a, devices: 1}]\nlayout: {tp: 1, pp: 1}\n",
                               "rack.yaml", {.model = "/models/x"});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->model(), "/models/x");
}

TEST(TopologyTest, MissingFileIsNotFound) {
  auto t = Topology::LoadFile("/nonexistent/rack.yaml");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("/nonexistent/rack.yaml"));
}

}  // namespace
}  // namespace rackserve::coordinator
