// Topology: which VMs a rack has and where each model replica's ranks run, read from a YAML file.
//
//   model: /path/to/model        # identity every worker must present
//   vms:
//     - {name: vm0, devices: 4}
//   layouts:                     # optional: named layouts
//     tp1: {tp: 1, pp: 1}
//     tp4-pp2: {tp: 4, pp: 2}
//   layout: tp1                  # a name from `layouts` or an inline {tp: 1, pp: 1}: replicas
//                                # r0, r1, ... of tp * pp ranks placed over all devices in
//                                # order (VM by VM, device by device), or
//   replicas:                    # an explicit list (exactly one of layout / replicas):
//     - {id: r0, tp: 1, pp: 1, ranks: [{vm: vm0, device: 0}]}
//
// Rank r of a replica runs at ranks[r]; rank 0 is the leader. Every error names the file, the
// line and the field ("rack.yaml:7: replicas[1].ranks[0].vm: unknown VM \"vm9\"").
// An immutable value: thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::coordinator {

struct VmSpec {
  std::string name;
  int devices = 0;  // GPUs (or emulated CPU devices) the VM's worker must offer
};

struct RankSpec {
  std::string vm;
  int device = 0;  // index on that VM
};

struct ReplicaSpec {
  std::string id;
  int tp = 1;
  int pp = 1;
  std::vector<RankSpec> ranks;  // tp * pp entries; ranks[0] is the leader
};

// One replica as seen from one VM.
struct VmAssignment {
  std::string replica_id;
  bool leader_here = false;  // the replica's rank 0 runs on this VM
};

// Choices made at load time (the coordinator's --layout and --model flags).
struct TopologyOverrides {
  std::string layout;  // a name from the file's `layouts`, chosen instead of its `layout`
  std::string model;   // replaces the file's `model` (which may then be absent)
};

class Topology {
 public:
  // Reads `path`: NOT_FOUND when it cannot be read, otherwise as Parse.
  static absl::StatusOr<Topology> LoadFile(const std::string& path,
                                           const TopologyOverrides& overrides = {});
  // INVALID_ARGUMENT "<source>:<line>: <field>: <what>" for malformed YAML, a missing or mistyped
  // field, a duplicate name, an unknown VM, a device out of range or used twice, a rank count that
  // is not tp * pp, a layout that does not divide the rack's devices, or a layout name (in the
  // file or in overrides.layout) that `layouts` does not define (the message lists the known ones).
  static absl::StatusOr<Topology> Parse(std::string_view yaml_text, std::string_view source,
                                        const TopologyOverrides& overrides = {});

  const std::string& model() const { return model_; }
  // The named layout the replicas come from; "" for an inline layout or explicit replicas.
  const std::string& layout_name() const { return layout_name_; }
  const std::vector<VmSpec>& vms() const { return vms_; }
  const std::vector<ReplicaSpec>& replicas() const { return replicas_; }

  const VmSpec* FindVm(std::string_view name) const;          // nullptr when unknown
  const ReplicaSpec* FindReplica(std::string_view id) const;  // nullptr when unknown
  // Replicas with at least one rank on `vm`, in topology order.
  std::vector<VmAssignment> AssignmentsFor(std::string_view vm) const;

 private:
  std::string model_;
  std::string layout_name_;
  std::vector<VmSpec> vms_;
  std::vector<ReplicaSpec> replicas_;
};

}  // namespace rackserve::coordinator
