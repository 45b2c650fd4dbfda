#include "coordinator/topology.h"

#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace rackserve::coordinator {
namespace {

// Reads YAML nodes, turning yaml-cpp's exceptions into INVALID_ARGUMENT naming file, line, field.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  absl::Status Error(const YAML::Node& node, const std::string& field,
                     const std::string& what) const {
    const int line = node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
    return absl::InvalidArgumentError(absl::StrCat(source_, ":", line, ": ", field, ": ", what));
  }

  absl::StatusOr<YAML::Node> Child(const YAML::Node& map, const std::string& key,
                                   const std::string& prefix) const {
    const std::string field = absl::StrCat(prefix, key);
    if (!map.IsMap()) return Error(map, prefix, "must be a mapping");
    YAML::Node child = map[key];
    if (!child.IsDefined() || child.IsNull()) return Error(map, field, "missing");
    return child;
  }

  absl::StatusOr<std::string> String(const YAML::Node& map, const std::string& key,
                                     const std::string& prefix) const {
    RS_ASSIGN_OR_RETURN(YAML::Node node, Child(map, key, prefix));
    if (!node.IsScalar()) return Error(node, absl::StrCat(prefix, key), "must be a string");
    std::string value = node.Scalar();
    if (value.empty()) return Error(node, absl::StrCat(prefix, key), "must not be empty");
    return value;
  }

  // An integer >= min_value.
  absl::StatusOr<int> Int(const YAML::Node& map, const std::string& key, const std::string& prefix,
                          int min_value) const {
    RS_ASSIGN_OR_RETURN(YAML::Node node, Child(map, key, prefix));
    const std::string field = absl::StrCat(prefix, key);
    int value = 0;
    if (!node.IsScalar() || !YAML::convert<int>::decode(node, value)) {
      return Error(node, field, "must be an integer");
    }
    if (value < min_value) {
      return Error(node, field, absl::StrCat("must be >= ", min_value, ", got ", value));
    }
    return value;
  }

 private:
  std::string source_;
};

absl::Status ParseDocument(const YAML::Node& root, const Reader& r, std::string* model,
                           std::vector<VmSpec>* vms, std::vector<ReplicaSpec>* replicas);

}  // namespace

absl::StatusOr<Topology> Topology::LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read topology file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<Topology> Topology::Parse(std::string_view yaml_text, std::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source), ":", e.mark.line + 1, ": malformed YAML: ", e.msg));
  }
  Reader r(source);
  if (!root.IsMap()) return r.Error(root, "(top level)", "must be a mapping");
  Topology topology;
  RS_RETURN_IF_ERROR(ParseDocument(root, r, &topology.model_, &topology.vms_, &topology.replicas_));
  return topology;
}

const VmSpec* Topology::FindVm(std::string_view name) const {
  for (const VmSpec& vm : vms_) {
    if (vm.name == name) return &vm;
  }
  return nullptr;
}

const ReplicaSpec* Topology::FindReplica(std::string_view id) const {
  for (const ReplicaSpec& replica : replicas_) {
    if (replica.id == id) return &replica;
  }
  return nullptr;
}

std::vector<VmAssignment> Topology::AssignmentsFor(std::string_view vm) const {
  std::vector<VmAssignment> out;
  for (const ReplicaSpec& replica : replicas_) {
    bool here = false;
    for (const RankSpec& rank : replica.ranks) here = here || rank.vm == vm;
    if (here) out.push_back({replica.id, replica.ranks.front().vm == vm});
  }
  return out;
}

namespace {

absl::Status ParseVms(const YAML::Node& root, const Reader& r, std::vector<VmSpec>* vms) {
  RS_ASSIGN_OR_RETURN(YAML::Node list, r.Child(root, "vms", ""));
  if (!list.IsSequence() || list.size() == 0) {
    return r.Error(list, "vms", "must be a non-empty list");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string prefix = absl::StrCat("vms[", i, "].");
    VmSpec vm;
    RS_ASSIGN_OR_RETURN(vm.name, r.String(list[i], "name", prefix));
    RS_ASSIGN_OR_RETURN(vm.devices, r.Int(list[i], "devices", prefix, 1));
    if (!names.insert(vm.name).second) {
      return r.Error(list[i], absl::StrCat(prefix, "name"),
                     absl::StrCat("duplicate VM \"", vm.name, "\""));
    }
    vms->push_back(std::move(vm));
  }
  return absl::OkStatus();
}

absl::Status ParseLayout(const YAML::Node& layout, const Reader& r, const std::vector<VmSpec>& vms,
                         std::vector<ReplicaSpec>* replicas) {
  RS_ASSIGN_OR_RETURN(int tp, r.Int(layout, "tp", "layout.", 1));
  RS_ASSIGN_OR_RETURN(int pp, r.Int(layout, "pp", "layout.", 1));
  std::vector<RankSpec> devices;
  for (const VmSpec& vm : vms) {
    for (int d = 0; d < vm.devices; ++d) devices.push_back({vm.name, d});
  }
  const size_t per_replica = static_cast<size_t>(tp) * pp;
  if (devices.size() % per_replica != 0) {
    return r.Error(layout, "layout",
                   absl::StrCat("tp * pp = ", per_replica, " does not divide the rack's ",
                                devices.size(), " devices"));
  }
  for (size_t first = 0; first < devices.size(); first += per_replica) {
    ReplicaSpec replica{absl::StrCat("r", first / per_replica), tp, pp, {}};
    replica.ranks.assign(devices.begin() + first, devices.begin() + first + per_replica);
    replicas->push_back(std::move(replica));
  }
  return absl::OkStatus();
}

absl::Status ParseReplicas(const YAML::Node& list, const Reader& r, const std::vector<VmSpec>& vms,
                           std::vector<ReplicaSpec>* replicas) {
  if (!list.IsSequence() || list.size() == 0) {
    return r.Error(list, "replicas", "must be a non-empty list");
  }
  std::set<std::string> ids;
  std::set<std::pair<std::string, int>> used;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string prefix = absl::StrCat("replicas[", i, "].");
    ReplicaSpec replica;
    RS_ASSIGN_OR_RETURN(replica.id, r.String(list[i], "id", prefix));
    if (!ids.insert(replica.id).second) {
      return r.Error(list[i], prefix + "id",
                     absl::StrCat("duplicate replica \"", replica.id, "\""));
    }
    RS_ASSIGN_OR_RETURN(replica.tp, r.Int(list[i], "tp", prefix, 1));
    RS_ASSIGN_OR_RETURN(replica.pp, r.Int(list[i], "pp", prefix, 1));
    RS_ASSIGN_OR_RETURN(YAML::Node ranks, r.Child(list[i], "ranks", prefix));
    const size_t expected = static_cast<size_t>(replica.tp) * replica.pp;
    if (!ranks.IsSequence() || ranks.size() != expected) {
      return r.Error(ranks, prefix + "ranks",
                     absl::StrCat("must list tp * pp = ", expected, " ranks"));
    }
    for (size_t k = 0; k < ranks.size(); ++k) {
      const std::string rank_prefix = absl::StrCat(prefix, "ranks[", k, "].");
      RankSpec rank;
      RS_ASSIGN_OR_RETURN(rank.vm, r.String(ranks[k], "vm", rank_prefix));
      RS_ASSIGN_OR_RETURN(rank.device, r.Int(ranks[k], "device", rank_prefix, 0));
      const VmSpec* vm = nullptr;
      for (const VmSpec& v : vms) {
        if (v.name == rank.vm) vm = &v;
      }
      if (vm == nullptr) {
        return r.Error(ranks[k], rank_prefix + "vm", absl::StrCat("unknown VM \"", rank.vm, "\""));
      }
      if (rank.device >= vm->devices) {
        return r.Error(ranks[k], rank_prefix + "device",
                       absl::StrCat("device ", rank.device, " out of range: VM \"", rank.vm,
                                    "\" has ", vm->devices));
      }
      if (!used.insert({rank.vm, rank.device}).second) {
        return r.Error(ranks[k], rank_prefix + "device",
                       absl::StrCat("device ", rank.vm, "/", rank.device, " used twice"));
      }
      replica.ranks.push_back(std::move(rank));
    }
    replicas->push_back(std::move(replica));
  }
  return absl::OkStatus();
}

absl::Status ParseDocument(const YAML::Node& root, const Reader& r, std::string* model,
                           std::vector<VmSpec>* vms, std::vector<ReplicaSpec>* replicas) {
  RS_ASSIGN_OR_RETURN(*model, r.String(root, "model", ""));
  RS_RETURN_IF_ERROR(ParseVms(root, r, vms));
  const YAML::Node layout = root["layout"];
  const YAML::Node explicit_replicas = root["replicas"];
  const bool has_layout = layout.IsDefined() && !layout.IsNull();
  const bool has_replicas = explicit_replicas.IsDefined() && !explicit_replicas.IsNull();
  if (has_layout == has_replicas) {
    return r.Error(root, "layout/replicas", "give exactly one of layout and replicas");
  }
  if (has_layout) {
    RS_RETURN_IF_ERROR(ParseLayout(layout, r, *vms, replicas));
  } else {
    RS_RETURN_IF_ERROR(ParseReplicas(explicit_replicas, r, *vms, replicas));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace rackserve::coordinator
