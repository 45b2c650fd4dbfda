#include "worker/rank_group.h"

#include <cstdio>
#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/ucx_communicator.h"
#include "runtime/comm/world_spec.h"
#include "runtime/parallel/world_config.h"

namespace rackserve::worker {
namespace {

// `status` with "replica '<id>' rank <r>: " before its message.
absl::Status Annotate(const absl::Status& status, const std::string& replica_id, int rank) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("replica '", replica_id, "' rank ", rank, ": ",
                                                  status.message()));
}

}  // namespace

RankGroup::RankGroup(RankGroupOptions options, RendezvousFactory rendezvous)
    : options_(std::move(options)), rendezvous_(std::move(rendezvous)) {}

RankGroup::~RankGroup() {
  const absl::Status gone = absl::CancelledError(
      absl::StrCat("replica '", options_.replica_id, "' was torn down on this worker"));
  {
    absl::MutexLock lock(&mu_);
    torn_down_ = true;
    formed_ = true;  // ranks still waiting to follow give up (go_ stays as it was)
  }
  for (const auto& local : ranks_) {
    if (local->world != nullptr) local->world->Abort(gone);
    if (local->tp != nullptr) local->tp->Abort(gone);
  }
  for (std::thread& t : threads_) t.join();
}

absl::Status RankGroup::Form() {
  RS_CHECK(ranks_.empty());
  const int size = options_.tp * options_.pp;
  if (options_.tp < 1 || options_.pp < 1) {
    return absl::InvalidArgumentError(absl::StrCat("replica '", options_.replica_id,
                                                   "': tp = ", options_.tp, ", pp = ", options_.pp,
                                                   " (both must be >= 1)"));
  }
  if (options_.local_ranks.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("replica '", options_.replica_id, "': local_ranks is empty"));
  }
  absl::flat_hash_set<int> seen;
  for (int rank : options_.local_ranks) {
    if (rank < 0 || rank >= size || !seen.insert(rank).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "replica '", options_.replica_id, "': local_ranks has rank ", rank,
          rank < 0 || rank >= size ? absl::StrCat(" outside [0, ", size, ")") : " twice"));
    }
  }
  for (int rank : options_.local_ranks) {
    auto local = std::make_unique<LocalRank>();
    local->rank = rank;
    ranks_.push_back(std::move(local));
  }
  for (const auto& local : ranks_) {
    threads_.emplace_back([this, l = local.get()] { RunRank(l); });
  }
  absl::Status failure;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](RankGroup* g) { return g->connected_ == static_cast<int>(g->ranks_.size()); }, this));
    failure = failure_;
    go_ = failure.ok();
    formed_ = true;
  }
  if (failure.ok()) return absl::OkStatus();
  // Abandoned: peers that formed elsewhere learn it (the aborted leader's engine, if any, then
  // shuts down at once); this worker's ranks stop.
  for (const auto& local : ranks_) {
    if (local->world != nullptr) local->world->Abort(failure);
    if (local->tp != nullptr) local->tp->Abort(failure);
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  std::unique_ptr<engine::Engine> abandoned;
  {
    absl::MutexLock lock(&mu_);
    abandoned = std::move(leader_engine_);
    leader_runner_ = nullptr;
  }
  return failure;
}

std::unique_ptr<engine::Engine> RankGroup::TakeLeaderEngine() {
  absl::MutexLock lock(&mu_);
  return std::move(leader_engine_);
}

absl::Status RankGroup::status() const {
  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  if (leader_runner_ != nullptr) return Annotate(leader_runner_->failure(), replica_id(), 0);
  return absl::OkStatus();
}

void RankGroup::RunRank(LocalRank* local) {
  const absl::Status connected = Annotate(Connect(local), replica_id(), local->rank);
  {
    absl::MutexLock lock(&mu_);
    if (!connected.ok() && failure_.ok()) failure_ = connected;
    ++connected_;
    mu_.Await(absl::Condition(&formed_));
    if (!go_ || local->rank == 0) return;
  }
  const absl::Status followed = engine::RunFollower(*local->world, *local->shard, nullptr);
  if (followed.ok()) return;
  absl::MutexLock lock(&mu_);
  if (torn_down_) return;  // aborted by the destructor: no failure to report
  std::fprintf(stderr, "rackserve-worker: replica '%s' rank %d failed: %s\n", replica_id().c_str(),
               local->rank, followed.ToString().c_str());
  if (failure_.ok()) failure_ = Annotate(followed, replica_id(), local->rank);
}

absl::Status RankGroup::Connect(LocalRank* local) {
  RS_ASSIGN_OR_RETURN(parallel::WorldConfig world,
                      parallel::WorldConfig::Create(options_.tp, options_.pp, local->rank));
  const std::string model =
      std::filesystem::absolute(options_.model_dir).lexically_normal().string();
  comm::UcxOptions ucx;
  ucx.connect_timeout = options_.connect_timeout;
  ucx.timeout = local->rank == 0 ? options_.comm_timeout : absl::InfiniteDuration();
  {
    comm::WorldSpec spec;
    spec.size = world.size();
    spec.layout = world.Layout();
    spec.model = model;
    std::unique_ptr<comm::Rendezvous> rendezvous = rendezvous_(options_.replica_id);
    RS_ASSIGN_OR_RETURN(local->world,
                        comm::CreateUcxCommunicator(spec, world.rank, *rendezvous, ucx));
  }
  if (options_.tp > 1) {
    comm::WorldSpec spec;
    spec.size = options_.tp;
    spec.layout = absl::StrCat(world.Layout(), "-stage", world.stage());
    spec.model = model;
    ucx.timeout = options_.comm_timeout;
    std::unique_ptr<comm::Rendezvous> rendezvous =
        rendezvous_(absl::StrCat(options_.replica_id, "/tp-stage", world.stage()));
    RS_ASSIGN_OR_RETURN(local->tp,
                        comm::CreateUcxCommunicator(spec, world.tp_rank(), *rendezvous, ucx));
  }
  auto pool = std::make_unique<base::ThreadPool>(options_.engine.num_threads);
  RS_ASSIGN_OR_RETURN(engine::LoadedShard shard,
                      engine::LoadCpuShard(options_.model_dir, world, {}, options_.engine,
                                           pool.get(), local->tp.get()));
  if (local->rank != 0) {
    local->pool = std::move(pool);
    local->shard = std::move(shard.executor);
    return absl::OkStatus();
  }
  auto runner = std::make_unique<engine::DistributedModelRunner>(local->world.get(),
                                                                 std::move(shard.executor));
  engine::DistributedModelRunner* runner_ptr = runner.get();
  RS_ASSIGN_OR_RETURN(
      std::unique_ptr<engine::Engine> engine,
      engine::Engine::Create(std::move(runner), shard.kv, options_.engine, std::move(pool)));
  absl::MutexLock lock(&mu_);
  leader_engine_ = std::move(engine);
  leader_runner_ = runner_ptr;
  return absl::OkStatus();
}

}  // namespace rackserve::worker
