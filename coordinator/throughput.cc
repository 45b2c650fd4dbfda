#include "coordinator/throughput.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {

int64_t RateWindow::BucketOf(absl::Time t) { return absl::ToUnixMillis(t) / 100; }

void RateWindow::Add(absl::Time at, double count) {
  const int64_t bucket = BucketOf(at);
  const int slot = static_cast<int>(((bucket % kBuckets) + kBuckets) % kBuckets);
  if (bucket_ids_[slot] != bucket) {
    bucket_ids_[slot] = bucket;
    counts_[slot] = 0;
  }
  counts_[slot] += count;
  total_ += count;
}

double RateWindow::Rate(absl::Time now, absl::Duration window) const {
  const int64_t last = BucketOf(now);
  const int64_t n = std::min<int64_t>(kBuckets, absl::ToInt64Milliseconds(window) / 100);
  double sum = 0;
  for (int64_t b = last - n + 1; b <= last; ++b) {
    const int slot = static_cast<int>(((b % kBuckets) + kBuckets) % kBuckets);
    if (bucket_ids_[slot] == b) sum += counts_[slot];
  }
  return sum / absl::ToDoubleSeconds(window);
}

RackThroughput::RackThroughput(std::vector<ReplicaPlacement> placements) {
  for (ReplicaPlacement& p : placements) {
    std::string id = p.replica_id;
    placements_[id] = std::move(p);
  }
}

void RackThroughput::RecordDelivered(absl::Time at, int64_t generated_tokens) {
  absl::MutexLock lock(&mutex_);
  rack_.generated.Add(at, static_cast<double>(generated_tokens));
  delivered_ += generated_tokens;
}

void RackThroughput::RecordReceived(const std::string& source, int64_t generated_tokens) {
  absl::MutexLock lock(&mutex_);
  if (RetiredLocked(source)) {
    retired_received_ += generated_tokens;
    retired_unreported_ += generated_tokens;
    return;
  }
  sources_[source].received += generated_tokens;
}

void RackThroughput::RecordDiscarded(int64_t generated_tokens) {
  absl::MutexLock lock(&mutex_);
  discarded_ += generated_tokens;
}

bool RackThroughput::RetiredLocked(const std::string& source) const {
  return retired_.contains(source);
}

void RackThroughput::RetireSource(const std::string& source) {
  absl::MutexLock lock(&mutex_);
  auto it = sources_.find(source);
  if (it != sources_.end()) {
    retired_received_ += it->second.received;
    retired_unreported_ += std::max<int64_t>(0, it->second.received - it->second.reported);
    sources_.erase(it);
  }
  if (!retired_.insert(source).second) return;
  retired_order_.push_back(source);
  if (retired_order_.size() > kRememberRetired) {
    retired_.erase(retired_order_.front());
    retired_order_.pop_front();
  }
}

void RackThroughput::RecordPrompt(absl::Time at, int64_t prompt_tokens) {
  absl::MutexLock lock(&mutex_);
  rack_.prompt.Add(at, static_cast<double>(prompt_tokens));
}

void RackThroughput::ReportCounters(absl::Time at, const std::string& source,
                                    const std::string& replica_id, int64_t generated_total,
                                    int64_t prompt_total) {
  absl::MutexLock lock(&mutex_);
  if (RetiredLocked(source)) return;  // a late report of a forgotten worker
  Source& counting = sources_[source];
  auto& last = counting.last[replica_id];
  const int64_t generated =
      generated_total >= last.first ? generated_total - last.first : generated_total;
  const int64_t prompt = prompt_total >= last.second ? prompt_total - last.second : prompt_total;
  last = {generated_total, prompt_total};
  worker_generated_ += generated;
  counting.reported += generated;
  auto placement = placements_.find(replica_id);
  if (placement == placements_.end()) return;  // counted in the audit, attributed nowhere
  const ReplicaPlacement& p = placement->second;
  auto add = [&](Meter& meter, double share) {
    meter.generated.Add(at, static_cast<double>(generated) * share);
    meter.prompt.Add(at, static_cast<double>(prompt) * share);
  };
  add(replicas_[p.replica_id], 1.0);
  add(vms_[p.leader_vm], 1.0);
  for (const std::string& device : p.devices) {
    add(devices_[device], 1.0 / static_cast<double>(p.devices.size()));
  }
}

ScopeThroughput RackThroughput::Describe(const std::string& name, const Meter& meter,
                                         absl::Time now) {
  ScopeThroughput out;
  out.name = name;
  for (int seconds : kWindowSeconds) {
    const absl::Duration w = absl::Seconds(seconds);
    out.windows.push_back(
        {static_cast<double>(seconds), meter.generated.Rate(now, w), meter.prompt.Rate(now, w)});
  }
  out.generated_total = meter.generated.total();
  out.prompt_total = meter.prompt.total();
  return out;
}

ThroughputSnapshot RackThroughput::Snapshot(absl::Time now) const {
  absl::MutexLock lock(&mutex_);
  ThroughputSnapshot s;
  s.rack = Describe("", rack_, now);
  for (const auto& [name, meter] : vms_) s.vms.push_back(Describe(name, meter, now));
  for (const auto& [name, meter] : devices_) s.devices.push_back(Describe(name, meter, now));
  for (const auto& [name, meter] : replicas_) s.replicas.push_back(Describe(name, meter, now));
  AuditFigures& a = s.audit;
  a.delivered = delivered_;
  a.reported = worker_generated_;
  a.discarded = discarded_;
  a.received = retired_received_;
  a.unreported = retired_unreported_;
  for (const auto& [name, source] : sources_) {
    a.received += source.received;
    a.unreported += std::max<int64_t>(0, source.received - source.reported);
  }
  a.exact = a.delivered == a.received - a.discarded && a.received == a.reported + a.unreported;
  return s;
}

void BatchJobMeter::Issued(absl::Time at) {
  if (!issued_) {
    issued_ = true;
    first_issue_ = at;
  }
}

void BatchJobMeter::Completed(absl::Time at, int64_t generated_tokens) {
  generated_ += generated_tokens;
  if (at > last_completion_) last_completion_ = at;
}

double BatchJobMeter::TokensPerSecond() const {
  if (!issued_ || last_completion_ <= first_issue_) return 0;
  return static_cast<double>(generated_) / absl::ToDoubleSeconds(last_completion_ - first_issue_);
}

}  // namespace rackserve::coordinator
