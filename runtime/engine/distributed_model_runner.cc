#include "runtime/engine/distributed_model_runner.h"

#include <array>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::engine {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kLeader = 0;
constexpr int64_t kShutdown = -1;

// A step's batch as int64 words: [num_chunks, then per chunk: start, samples, num_tokens,
// num_blocks, tokens..., blocks...]; [kShutdown] ends the followers' loop.
std::vector<int64_t> EncodeBatch(std::span<const BatchChunk> chunks) {
  std::vector<int64_t> words{static_cast<int64_t>(chunks.size())};
  for (const BatchChunk& c : chunks) {
    words.insert(words.end(), {c.start, c.samples ? 1 : 0, static_cast<int64_t>(c.tokens.size()),
                               static_cast<int64_t>(c.block_table.size())});
    words.insert(words.end(), c.tokens.begin(), c.tokens.end());
    words.insert(words.end(), c.block_table.begin(), c.block_table.end());
  }
  return words;
}

// Decoded batch: chunks whose spans point into `storage`.
struct DecodedBatch {
  std::vector<int32_t> storage;
  std::vector<BatchChunk> chunks;
};

absl::StatusOr<DecodedBatch> DecodeBatch(const std::vector<int64_t>& words) {
  auto malformed = [] { return absl::InternalError("malformed batch from the replica leader"); };
  if (words.empty() || words[0] < 0) return malformed();
  DecodedBatch b;
  size_t pos = 1;
  std::vector<std::array<int64_t, 4>> heads;
  for (int64_t c = 0; c < words[0]; ++c) {
    if (pos + 4 > words.size()) return malformed();
    const std::array<int64_t, 4> head{words[pos], words[pos + 1], words[pos + 2], words[pos + 3]};
    pos += 4;
    if (head[2] < 0 || head[3] < 0 || pos + head[2] + head[3] > words.size()) return malformed();
    for (int64_t i = 0; i < head[2] + head[3]; ++i) {
      b.storage.push_back(static_cast<int32_t>(words[pos + i]));
    }
    pos += head[2] + head[3];
    heads.push_back(head);
  }
  size_t offset = 0;  // spans are made once storage stops growing
  for (const auto& head : heads) {
    BatchChunk chunk;
    chunk.start = head[0];
    chunk.samples = head[1] != 0;
    chunk.tokens = std::span<const int32_t>(b.storage).subspan(offset, head[2]);
    chunk.block_table = std::span<const int32_t>(b.storage).subspan(offset + head[2], head[3]);
    offset += head[2] + head[3];
    b.chunks.push_back(chunk);
  }
  return b;
}

absl::Status BroadcastWords(comm::Communicator& world, std::vector<int64_t>* words) {
  int64_t count = static_cast<int64_t>(words->size());
  RS_RETURN_IF_ERROR(world.Broadcast(&count, sizeof count, kLeader));
  words->resize(count);
  return world.Broadcast(words->data(), count * static_cast<int64_t>(sizeof(int64_t)), kLeader);
}

int64_t Rows(std::span<const BatchChunk> chunks) {
  int64_t rows = 0;
  for (const BatchChunk& c : chunks) rows += static_cast<int64_t>(c.tokens.size());
  return rows;
}

int64_t SamplingRows(std::span<const BatchChunk> chunks) {
  int64_t rows = 0;
  for (const BatchChunk& c : chunks) rows += c.samples ? 1 : 0;
  return rows;
}

// Splits chunks into up to `parts` contiguous micro-batches of similar token counts.
std::vector<std::span<const BatchChunk>> MicroBatches(std::span<const BatchChunk> chunks,
                                                      int parts) {
  std::vector<std::span<const BatchChunk>> out;
  const int64_t total = Rows(chunks);
  size_t begin = 0;
  int64_t done = 0;
  for (int p = 1; p <= parts && begin < chunks.size(); ++p) {
    const int64_t target = total * p / parts;
    size_t end = begin;
    while (end < chunks.size() && (end == begin || done < target || p == parts)) {
      done += static_cast<int64_t>(chunks[end].tokens.size());
      ++end;
    }
    out.push_back(chunks.subspan(begin, end - begin));
    begin = end;
  }
  return out;
}

}  // namespace

absl::Status RunRankStep(std::span<const BatchChunk> chunks, CpuShardExecutor& executor,
                         comm::Communicator& world, std::vector<float>* logits,
                         PipelineStats* stats) {
  const auto step_start = Clock::now();
  double compute = 0;
  auto timed = [&compute](auto&& fn) {
    const auto t0 = Clock::now();
    absl::Status s = fn();
    compute += std::chrono::duration<double>(Clock::now() - t0).count();
    return s;
  };
  const parallel::WorldConfig& w = executor.plan().world;
  const int64_t H = executor.config().hidden_size;
  const int64_t V = executor.config().vocab_size;
  const std::vector<std::span<const BatchChunk>> micro = MicroBatches(chunks, w.pp);
  const int leader_source = w.RankOf(w.pp - 1, 0);  // sends the logits to the leader

  std::vector<std::vector<float>> hidden(micro.size()), micro_logits(micro.size());
  std::vector<std::unique_ptr<comm::Communicator::Pending>> sends;
  for (size_t m = 0; m < micro.size(); ++m) {
    if (w.first_stage()) {
      RS_RETURN_IF_ERROR(timed([&] { return executor.Embed(micro[m], &hidden[m]); }));
    } else {
      hidden[m].resize(Rows(micro[m]) * H);
      RS_RETURN_IF_ERROR(world.Recv(hidden[m].data(),
                                    static_cast<int64_t>(hidden[m].size() * sizeof(float)),
                                    w.RankOf(w.stage() - 1, w.tp_rank())));
    }
    RS_RETURN_IF_ERROR(timed([&] { return executor.RunLayers(micro[m], &hidden[m]); }));
    if (!w.last_stage()) {
      RS_ASSIGN_OR_RETURN(
          auto send,
          world.SendAsync(hidden[m].data(), static_cast<int64_t>(hidden[m].size() * sizeof(float)),
                          w.RankOf(w.stage() + 1, w.tp_rank())));
      sends.push_back(std::move(send));
      continue;
    }
    RS_RETURN_IF_ERROR(timed([&] { return executor.Head(micro[m], hidden[m], &micro_logits[m]); }));
    if (w.rank == leader_source && w.rank != kLeader) {
      RS_ASSIGN_OR_RETURN(
          auto send,
          world.SendAsync(micro_logits[m].data(),
                          static_cast<int64_t>(micro_logits[m].size() * sizeof(float)), kLeader));
      sends.push_back(std::move(send));
    }
  }
  for (auto& send : sends) RS_RETURN_IF_ERROR(send->Wait());

  if (w.rank == kLeader) {
    logits->clear();
    for (size_t m = 0; m < micro.size(); ++m) {
      if (leader_source != kLeader) {
        micro_logits[m].resize(SamplingRows(micro[m]) * V);
        RS_RETURN_IF_ERROR(world.Recv(micro_logits[m].data(),
                                      static_cast<int64_t>(micro_logits[m].size() * sizeof(float)),
                                      leader_source));
      }
      logits->insert(logits->end(), micro_logits[m].begin(), micro_logits[m].end());
    }
  }
  if (stats != nullptr) {
    stats->steps++;
    stats->compute_seconds += compute;
    stats->step_seconds += std::chrono::duration<double>(Clock::now() - step_start).count();
  }
  return absl::OkStatus();
}

absl::Status RunFollower(comm::Communicator& world, CpuShardExecutor& executor,
                         PipelineStats* stats) {
  RS_CHECK(world.rank() != kLeader);
  while (true) {
    std::vector<int64_t> words;
    RS_RETURN_IF_ERROR(BroadcastWords(world, &words));
    if (words.size() == 1 && words[0] == kShutdown) return absl::OkStatus();
    RS_ASSIGN_OR_RETURN(DecodedBatch batch, DecodeBatch(words));
    RS_RETURN_IF_ERROR(executor.Validate(batch.chunks));
    RS_RETURN_IF_ERROR(RunRankStep(batch.chunks, executor, world, nullptr, stats));
  }
}

DistributedModelRunner::DistributedModelRunner(comm::Communicator* world,
                                               std::unique_ptr<CpuShardExecutor> executor)
    : world_(world), executor_(std::move(executor)) {
  RS_CHECK(world_->rank() == kLeader && world_->size() == executor_->plan().world.size());
}

DistributedModelRunner::~DistributedModelRunner() { Shutdown().IgnoreError(); }

absl::Status DistributedModelRunner::Forward(std::span<const BatchChunk> chunks,
                                             std::vector<float>* logits) {
  if (shut_down_) return absl::FailedPreconditionError("the replica was shut down");
  RS_RETURN_IF_ERROR(executor_->Validate(chunks));
  std::vector<int64_t> words = EncodeBatch(chunks);
  RS_RETURN_IF_ERROR(Record(BroadcastWords(*world_, &words)));
  return Record(RunRankStep(chunks, *executor_, *world_, logits, &stats_));
}

absl::Status DistributedModelRunner::failure() const {
  absl::MutexLock lock(&failure_mu_);
  return failure_;
}

absl::Status DistributedModelRunner::Record(absl::Status status) {
  if (!status.ok()) {
    absl::MutexLock lock(&failure_mu_);
    if (failure_.ok()) failure_ = status;
  }
  return status;
}

absl::Status DistributedModelRunner::Shutdown() {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  std::vector<int64_t> words{kShutdown};
  return BroadcastWords(*world_, &words);
}

}  // namespace rackserve::engine
