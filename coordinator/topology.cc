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

// What ParseDocument fills in.
struct Parsed {
  std::string model;
  std::string layout_name;
  std::vector<VmSpec> vms;
  std::vector<ReplicaSpec> replicas;
};

absl::Status ParseDocument(const YAML::Node& root, const Reader& r,
                           const TopologyOverrides& overrides, Parsed* out);

}  // namespace

absl::StatusOr<Topology> Topology::LoadFile(const std::string& path,
                                            const TopologyOverrides& overrides) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read topology file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path, overrides);
}

absl::StatusOr<Topology> Topology::Parse(std::string_view yaml_text, std::string_view source,
                                         const TopologyOverrides& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source), ":", e.mark.line + 1, ": malformed YAML: ", e.msg));
  }
  Reader r(source);
  if (!root.IsMap()) return r.Error(root, "(top level)", "must be a mapping");
  Parsed parsed;
  RS_RETURN_IF_ERROR(ParseDocument(root, r, overrides, &parsed));
  Topology topology;
  topology.model_ = std::move(parsed.model);
  topology.layout_name_ = std::move(parsed.layout_name);
  topology.vms_ = std::move(parsed.vms);
  topology.replicas_ = std::move(parsed.replicas);
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

// A {tp, pp} mapping at `field` ("layout", "layouts.tp4"): replicas placed over all devices in
// order.
absl::Status ParseLayout(const YAML::Node& layout, const std::string& field, const Reader& r,
                         const std::vector<VmSpec>& vms, std::vector<ReplicaSpec>* replicas) {
  RS_ASSIGN_OR_RETURN(int tp, r.Int(layout, "tp", field + ".", 1));
  RS_ASSIGN_OR_RETURN(int pp, r.Int(layout, "pp", field + ".", 1));
  std::vector<RankSpec> devices;
  for (const VmSpec& vm : vms) {
    for (int d = 0; d < vm.devices; ++d) devices.push_back({vm.name, d});
  }
  const size_t per_replica = static_cast<size_t>(tp) * pp;
  if (devices.size() % per_replica != 0) {
    return r.Error(layout, field,
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

// The file's named layouts, each checked against the rack (a bad one is an error even when another
// is chosen). Empty when the file has no `layouts`.
absl::StatusOr<std::vector<std::pair<std::string, std::vector<ReplicaSpec>>>> ParseNamedLayouts(
    const YAML::Node& root, const Reader& r, const std::vector<VmSpec>& vms) {
  std::vector<std::pair<std::string, std::vector<ReplicaSpec>>> layouts;
  const YAML::Node map = root["layouts"];
  if (!map.IsDefined() || map.IsNull()) return layouts;
  if (!map.IsMap() || map.size() == 0) {
    return r.Error(map, "layouts", "must be a non-empty mapping of name: {tp, pp}");
  }
  for (const auto& entry : map) {
    const std::string name = entry.first.Scalar();
    if (name.empty()) return r.Error(entry.first, "layouts", "a layout name is empty");
    std::vector<ReplicaSpec> replicas;
    RS_RETURN_IF_ERROR(
        ParseLayout(entry.second, absl::StrCat("layouts.", name), r, vms, &replicas));
    layouts.emplace_back(name, std::move(replicas));
  }
  return layouts;
}

// Picks the named layout `name` (field: where the name came from, for messages).
absl::Status ChooseNamedLayout(
    const std::vector<std::pair<std::string, std::vector<ReplicaSpec>>>& layouts,
    const std::string& name, const YAML::Node& at, const std::string& field, const Reader& r,
    Parsed* out) {
  std::string known;
  for (const auto& [layout_name, replicas] : layouts) {
    if (layout_name == name) {
      out->layout_name = name;
      out->replicas = replicas;
      return absl::OkStatus();
    }
    absl::StrAppend(&known, known.empty() ? "" : ", ", layout_name);
  }
  if (layouts.empty()) {
    return r.Error(at, field, absl::StrCat("no `layouts` in the file to find \"", name, "\" in"));
  }
  return r.Error(at, field, absl::StrCat("unknown layout \"", name, "\"; known: ", known));
}

absl::Status ParseDocument(const YAML::Node& root, const Reader& r,
                           const TopologyOverrides& overrides, Parsed* out) {
  if (overrides.model.empty()) {
    RS_ASSIGN_OR_RETURN(out->model, r.String(root, "model", ""));
  } else {
    out->model = overrides.model;
  }
  RS_RETURN_IF_ERROR(ParseVms(root, r, &out->vms));
  RS_ASSIGN_OR_RETURN(auto named, ParseNamedLayouts(root, r, out->vms));
  const YAML::Node layout = root["layout"];
  const YAML::Node explicit_replicas = root["replicas"];
  const bool has_layout = layout.IsDefined() && !layout.IsNull();
  const bool has_replicas = explicit_replicas.IsDefined() && !explicit_replicas.IsNull();
  if (has_replicas && !overrides.layout.empty()) {
    return r.Error(explicit_replicas, "replicas",
                   absl::StrCat("layout \"", overrides.layout,
                                "\" was asked for but the file lists explicit replicas"));
  }
  if (!overrides.layout.empty()) {
    const YAML::Node at = named.empty() ? root : root["layouts"];
    return ChooseNamedLayout(named, overrides.layout, at, "layouts", r, out);
  }
  if (has_layout == has_replicas) {
    return r.Error(root, "layout/replicas", "give exactly one of layout and replicas");
  }
  if (has_replicas) return ParseReplicas(explicit_replicas, r, out->vms, &out->replicas);
  if (layout.IsScalar()) return ChooseNamedLayout(named, layout.Scalar(), layout, "layout", r, out);
  return ParseLayout(layout, "layout", r, out->vms, &out->replicas);
}

}  // namespace
}  // namespace rackserve::coordinator
