// rackctl bench --scenario offline|server|interactive [--count N] [--qps R] [--seed S]
//   [--out-dir DIR] [--max-output N] [--streams N] [--direct]
//
// A LoadGen-style run on the synthetic MLPerf-llama2-like dataset (synthetic_dataset.h), every
// request greedy with ignore_eos and max_new_tokens = the sample's output length.
// - offline: every sample submitted at once, round-robin over --streams (default 4)
//   SubmitBatchPacked streams, 64 requests per message (the coordinator reads each stream on one
//   thread). TTFT is the coordinator's (a batch returns whole completions); latency is measured
//   here.
// - server / interactive: Poisson arrivals at --qps, round-robin over the same streams, with
//   first-token notes; TTFT, TPOT and latency measured here. With --direct the samples go straight
//   to the workers' Serve streams (direct_workers.h): the baseline for what the coordinator adds.
// Prints the summary (loadgen_summary.h) with the rack's own figure from GetStats (before/after
// deltas per VM) and writes mlperf_log_summary.txt and summary.json to --out-dir. Exit 1 when a
// sample failed; an INVALID verdict on latency alone still exits 0 (it is a result).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/command_args.h"
#include "client/direct_workers.h"
#include "client/loadgen_summary.h"
#include "client/model_info.h"
#include "client/streaming_target.h"
#include "client/synthetic_dataset.h"
#include "runtime/tools/progress_bar.h"

namespace rackserve::client {
namespace {

constexpr char kCommand[] = "bench";
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

RequestSpec SpecFor(const DatasetSample& sample, size_t i) {
  RequestSpec spec;
  spec.id = absl::StrCat("s", i);
  spec.prompt_ids = sample.prompt_ids;
  spec.max_new_tokens = sample.output_tokens;
  spec.ignore_eos = true;
  return spec;
}

absl::StatusOr<v1::RackStats> GetStats(RackConnection& rack) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::RackStats stats;
  const grpc::Status status = rack.stub().GetStats(&context, v1::StatsRequest(), &stats);
  if (!status.ok()) return rack.Convert(status, "GetStats");
  return stats;
}

// The coordinator as a StreamingTarget: `streams` SubmitBatchPacked streams, sample i on stream
// i % streams (the coordinator reads each stream on one thread; several streams feed it
// faster), a reader thread per stream. With `notify` (timed arrivals), every request asks for
// its first-token note and goes out in a message of its own at once; without (offline), up to
// kRequestsPerMessage requests share a message.
class CoordinatorBatch final : public StreamingTarget {
 public:
  CoordinatorBatch(RackConnection& rack, size_t samples, int streams, bool notify)
      : rack_(rack), samples_(samples), notify_(notify), readers_left_(streams) {
    for (int i = 0; i < streams; ++i) {
      auto stream = std::make_unique<Stream>();
      stream->rw = rack.stub().SubmitBatchPacked(&stream->call);
      streams_.push_back(std::move(stream));
    }
    for (const std::unique_ptr<Stream>& stream : streams_) {
      stream->reader = std::thread([this, s = stream.get()] { ReadLoop(s); });
    }
  }
  ~CoordinatorBatch() override {
    for (const std::unique_ptr<Stream>& stream : streams_) {
      stream->call.TryCancel();
      if (stream->reader.joinable()) stream->reader.join();
    }
  }

  bool Send(size_t sample, const v1::GenerateRequest& request) override {
    Stream& stream = *streams_[sample % streams_.size()];
    v1::GenerateRequest* added = stream.pending.add_requests();
    *added = request;
    if (notify_) added->set_notify_first_token(true);
    if (!notify_ && stream.pending.requests_size() < kRequestsPerMessage) return true;
    return Flush(stream);
  }
  void DoneSending() override {
    for (const std::unique_ptr<Stream>& stream : streams_) {
      Flush(*stream);
      stream->rw->WritesDone();
    }
  }
  bool Next(SampleEvent* event) override {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return !events_.empty() || readers_left_ == 0; });
    if (events_.empty()) return false;
    *event = std::move(events_.front());
    events_.pop_front();
    return true;
  }
  absl::Status Finish() override {
    absl::Status first_error;
    for (const std::unique_ptr<Stream>& stream : streams_) {
      if (stream->reader.joinable()) stream->reader.join();
      const grpc::Status status = stream->rw->Finish();
      if (!status.ok() && first_error.ok()) {
        first_error = rack_.Convert(status, "SubmitBatchPacked");
      }
    }
    return first_error;
  }

  // The coordinator's offline job figure over every stream (after Finish()): their generated
  // tokens over the longest stream's time from first issue to last completion (each stream's
  // "batch-generated-tokens" / "batch-tokens-per-second" trailing metadata); 0 when absent.
  double JobTokensPerSecond() const {
    double tokens = 0, seconds = 0;
    for (const std::unique_ptr<Stream>& stream : streams_) {
      double stream_tokens = 0, rate = 0;
      for (const auto& [key, value] : stream->call.GetServerTrailingMetadata()) {
        const std::string name(key.data(), key.size()), text(value.data(), value.size());
        if (name == "batch-generated-tokens" && !absl::SimpleAtod(text, &stream_tokens)) {
          stream_tokens = 0;
        }
        if (name == "batch-tokens-per-second" && !absl::SimpleAtod(text, &rate)) rate = 0;
      }
      tokens += stream_tokens;
      if (rate > 0) seconds = std::max(seconds, stream_tokens / rate);
    }
    return seconds > 0 ? tokens / seconds : 0;
  }

 private:
  // Offline requests per message: large enough that the per-message cost vanishes, small enough
  // (~1,000 tokens of prompt each) to stay far below gRPC's 4 MiB message limit.
  static constexpr int kRequestsPerMessage = 64;

  struct Stream {
    grpc::ClientContext call;
    std::unique_ptr<grpc::ClientReaderWriter<v1::GenerateRequestBatch, v1::CompletionBatch>> rw;
    std::thread reader;
    v1::GenerateRequestBatch pending;  // not sent yet; the sending thread's only
  };

  // Sends the stream's pending requests (true when there are none).
  static bool Flush(Stream& stream) {
    if (stream.pending.requests_size() == 0) return true;
    const bool sent = stream.rw->Write(stream.pending);
    stream.pending.Clear();
    return sent;
  }

  void ReadLoop(Stream* stream) {
    v1::CompletionBatch batch;
    while (stream->rw->Read(&batch)) {
      std::vector<SampleEvent> events;
      for (const v1::Completion& completion : batch.completions()) {
        int64_t i = -1;
        if (!absl::SimpleAtoi(completion.request_id().substr(1), &i) || i < 0 ||
            i >= static_cast<int64_t>(samples_)) {
          continue;
        }
        SampleEvent& event = events.emplace_back();
        event.sample = static_cast<size_t>(i);
        event.first_token = completion.first_token();
        event.completed = !event.first_token && completion.error_code() == 0;
        event.output_tokens = completion.token_ids_size();
        event.error = completion.error_message();
        event.coordinator_ttft_seconds = completion.timings().ttft_seconds();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (SampleEvent& event : events) events_.push_back(std::move(event));
      }
      changed_.notify_one();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      --readers_left_;
    }
    changed_.notify_all();
  }

  RackConnection& rack_;
  const size_t samples_;
  const bool notify_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<SampleEvent> events_;  // guarded by mu_
  int readers_left_;                // guarded by mu_
};

// Offline: every sample written at once (round-robin over the target's streams). TTFT is the
// coordinator's (a batch returns whole completions); latency is measured here.
absl::Status RunOffline(StreamingTarget& target, const std::vector<DatasetSample>& samples,
                        Clock::time_point* start, Clock::time_point* end,
                        std::vector<SampleRecord>* records) {
  *start = Clock::now();
  *end = *start;
  std::thread writer([&] {
    for (size_t i = 0; i < samples.size(); ++i) {
      if (!target.Send(i, ToGenerateRequest(SpecFor(samples[i], i)))) break;
    }
    target.DoneSending();
  });
  tools::ProgressBar progress("bench offline", "samples");
  int64_t done = 0;
  SampleEvent event;
  while (target.Next(&event)) {
    *end = Clock::now();
    SampleRecord& r = (*records)[event.sample];
    r.completed = event.completed;
    r.error = event.error;
    r.output_tokens = event.output_tokens;
    r.ttft_seconds = event.coordinator_ttft_seconds;
    r.latency_seconds = Seconds(*end - *start);
    progress.Update(++done, static_cast<int64_t>(samples.size()));
  }
  writer.join();
  progress.Finish();
  return target.Finish();
}

// Server / interactive: Poisson arrivals at `qps` on `target` (no thread or call per request).
// TTFT is measured here, from the moment a request was written to the moment its first token
// was known here.
absl::Status RunStreaming(StreamingTarget& target, const std::vector<DatasetSample>& samples,
                          double qps, uint64_t seed, const std::string& label,
                          Clock::time_point* start, Clock::time_point* end,
                          std::vector<SampleRecord>* records) {
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::exponential_distribution<double> gap(qps);
  std::vector<Clock::time_point> issued(samples.size());
  std::vector<std::atomic<bool>> written(samples.size());
  *start = Clock::now();
  *end = *start;
  std::thread writer([&] {
    Clock::time_point next = *start;
    for (size_t i = 0; i < samples.size(); ++i) {
      std::this_thread::sleep_until(next);
      const v1::GenerateRequest request = ToGenerateRequest(SpecFor(samples[i], i));
      issued[i] = Clock::now();
      written[i] = true;
      if (!target.Send(i, request)) break;
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
    target.DoneSending();
  });
  tools::ProgressBar progress("bench " + label, "samples");
  int64_t done = 0;
  SampleEvent event;
  while (target.Next(&event)) {
    const Clock::time_point now = Clock::now();
    if (!written[event.sample]) continue;
    SampleRecord& r = (*records)[event.sample];
    if (event.first_token) {
      r.ttft_seconds = Seconds(now - issued[event.sample]);
      continue;
    }
    r.completed = event.completed;
    r.error = event.error;
    r.output_tokens = event.output_tokens;
    r.latency_seconds = Seconds(now - issued[event.sample]);
    *end = std::max(*end, now);
    progress.Update(++done, static_cast<int64_t>(samples.size()));
  }
  writer.join();
  progress.Finish();
  return target.Finish();
}

// Unix seconds of a steady-clock time point (the workers stamp their counters in wall time).
double UnixSeconds(Clock::time_point t) {
  const auto wall =
      std::chrono::system_clock::now() -
      std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - t);
  return std::chrono::duration<double>(wall.time_since_epoch()).count();
}

// The rack's figure over the run [start, end]: GetStats deltas, after the workers' reports caught
// up.
RackFigure RackFigureOf(RackConnection& rack, const v1::RackStats& before, Clock::time_point start,
                        Clock::time_point end, double batch_tokens_per_second) {
  const double duration = Seconds(end - start);
  const double start_unix = UnixSeconds(start), end_unix = UnixSeconds(end);
  RackFigure figure;
  // Caught up: every token the rack delivered reported, every replica's counters read after the
  // end (its idle time to the end counted).
  const auto caught_up = [&](const v1::RackStats& stats) {
    if (stats.worker_generated_tokens_total() < stats.rack().generated_tokens_total()) return false;
    return std::all_of(
        stats.replicas().begin(), stats.replicas().end(), [&](const v1::ScopeStats& r) {
          return r.state() != "ready" || r.counters_read_at_unix_seconds() >= end_unix;
        });
  };
  absl::StatusOr<v1::RackStats> after = GetStats(rack);
  for (const auto until = Clock::now() + std::chrono::seconds(5);
       after.ok() && !caught_up(*after) && Clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = GetStats(rack);
  }
  if (!after.ok() || duration <= 0) return figure;
  figure.present = true;
  figure.batch_tokens_per_second = batch_tokens_per_second;
  figure.tokens_per_second = static_cast<double>(after->rack().generated_tokens_total() -
                                                 before.rack().generated_tokens_total()) /
                             duration;
  std::map<std::string, int64_t> before_vm;
  for (const v1::ScopeStats& vm : before.vms()) {
    before_vm[vm.name()] = vm.throughput().generated_tokens_total();
  }
  for (const v1::ScopeStats& vm : after->vms()) {
    const int64_t delta = vm.throughput().generated_tokens_total() - before_vm[vm.name()];
    figure.vms.push_back({vm.name(), static_cast<double>(delta) / duration});
  }
  // Each replica's own figure over the run: its generated tokens / the seconds it had work (and
  // / its busy seconds: the step figure). Its idle seconds between the reports count only inside
  // the run: a quiet rack idles from the first report to the start, and after the end until the
  // second report.
  std::map<std::string, const v1::ScopeStats*> before_replica;
  for (const v1::ScopeStats& r : before.replicas()) before_replica[r.name()] = &r;
  for (const v1::ScopeStats& r : after->replicas()) {
    auto it = before_replica.find(r.name());
    if (it == before_replica.end()) continue;
    const auto tokens = static_cast<double>(r.throughput().generated_tokens_total() -
                                            it->second->throughput().generated_tokens_total());
    const double outside = std::max(0.0, start_unix - it->second->counters_read_at_unix_seconds()) +
                           std::max(0.0, r.counters_read_at_unix_seconds() - end_unix);
    const double idle = std::max(0.0, r.idle_seconds() - it->second->idle_seconds() - outside);
    const double with_work = duration - idle;
    if (with_work > 0) figure.gpus_own_tokens_per_second += tokens / with_work;
    const double busy = r.busy_seconds() - it->second->busy_seconds();
    if (busy > 0) figure.gpus_step_tokens_per_second += tokens / busy;
  }
  figure.audit = AuditLine(after->audit());
  return figure;
}

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::PermissionDeniedError("cannot write " + path.string());
  return absl::OkStatus();
}

}  // namespace

int RunBench(const CommandContext& context, const std::vector<std::string>& argv) {
  absl::StatusOr<CommandArgs> args =
      CommandArgs::Parse(
          argv, {"scenario", "count", "qps", "seed", "out-dir", "max-output", "streams"},
          {"direct"});
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  if (!args->Has("scenario") || !args->positional().empty()) {
    return ReportUsage(kCommand,
                       absl::InvalidArgumentError("usage: rackctl bench --scenario "
                                                  "offline|server|interactive [--count N] "
                                                  "[--qps R] [--seed S] [--out-dir DIR] "
                                                  "[--max-output N] [--streams N] "
                                                  "[--direct]"));
  }
  if (args->Has("direct") && args->String("scenario", "") == "offline") {
    return ReportUsage(kCommand, absl::InvalidArgumentError(
                                     "--direct: only the server and interactive scenarios"));
  }
  absl::StatusOr<Scenario> scenario = ParseScenario(args->String("scenario", ""));
  if (!scenario.ok()) return ReportUsage(kCommand, scenario.status());
  DatasetOptions dataset;
  absl::StatusOr<int64_t> count = args->Int("count", 1000, 1, 10'000'000);
  absl::StatusOr<double> qps = args->Double("qps", 1.0, 1e-6, 1e7);
  absl::StatusOr<int64_t> seed = args->Int("seed", 0, 0, INT64_MAX);
  absl::StatusOr<int64_t> max_output = args->Int("max-output", 1023, 1, 1023);
  absl::StatusOr<int64_t> streams = args->Int("streams", 4, 1, 64);
  for (const absl::Status& s : {count.status(), qps.status(), seed.status(), max_output.status(),
                                streams.status()}) {
    if (!s.ok()) return ReportUsage(kCommand, s);
  }
  const std::string out_dir = args->String("out-dir", "");

  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());
  absl::StatusOr<v1::Topology> topology = (*rack)->Topology();
  if (!topology.ok()) return ReportFailure(kCommand, topology.status());
  const ModelInfo model = ReadModelInfo(topology->model());
  dataset.count = *count;
  dataset.seed = static_cast<uint64_t>(*seed);
  dataset.max_output = *max_output;
  dataset.vocab_size = model.vocab_size;
  dataset.max_context = model.max_context;
  absl::StatusOr<std::vector<DatasetSample>> samples = MakeSyntheticDataset(dataset);
  if (!samples.ok()) return ReportUsage(kCommand, samples.status());
  absl::StatusOr<v1::RackStats> before = GetStats(**rack);
  if (!before.ok()) return ReportFailure(kCommand, before.status());

  BenchRun run;
  run.scenario = *scenario;
  run.samples.resize(samples->size());
  Clock::time_point start, end;
  double batch_tokens_per_second = 0;
  if (*scenario == Scenario::kOffline) {
    CoordinatorBatch target(**rack, samples->size(), static_cast<int>(*streams), false);
    const absl::Status ran = RunOffline(target, *samples, &start, &end, &run.samples);
    if (!ran.ok()) return ReportFailure(kCommand, ran);
    batch_tokens_per_second = target.JobTokensPerSecond();
  } else {
    run.target_qps = *qps;
    std::unique_ptr<StreamingTarget> target;
    if (args->Has("direct")) {
      absl::StatusOr<std::unique_ptr<DirectWorkers>> direct = DirectWorkers::Connect(*topology);
      if (!direct.ok()) return ReportFailure(kCommand, direct.status());
      target = *std::move(direct);
    } else {
      target = std::make_unique<CoordinatorBatch>(**rack, samples->size(),
                                                  static_cast<int>(*streams), true);
    }
    const absl::Status streamed = RunStreaming(*target, *samples, *qps, dataset.seed,
                                               args->String("scenario", ""), &start, &end,
                                               &run.samples);
    if (!streamed.ok()) return ReportFailure(kCommand, streamed);
  }
  run.duration_seconds = Seconds(end - start);
  const BenchSummary summary = Summarize(run);
  const RackFigure rack_figure = RackFigureOf(**rack, *before, start, end, batch_tokens_per_second);
  const std::string text = FormatSummary(summary, rack_figure);
  std::fputs(text.c_str(), stdout);
  if (!out_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(out_dir, error);
    for (const absl::Status& s :
         {WriteFile(std::filesystem::path(out_dir) / "mlperf_log_summary.txt", text),
          WriteFile(std::filesystem::path(out_dir) / "summary.json",
                    SummaryJson(summary, rack_figure) + "\n")}) {
      if (!s.ok()) return ReportFailure(kCommand, s);
    }
  }
  // The distinct reasons samples failed, the first few of each kind, so a failed run says why.
  std::map<std::string, int64_t> errors;
  for (const SampleRecord& r : run.samples) {
    if (!r.completed) ++errors[r.error.empty() ? "no completion received" : r.error];
  }
  int shown = 0;
  for (const auto& [error, n] : errors) {
    if (shown++ == 5) break;
    std::fprintf(stderr, "rackctl %s: %lld samples failed: %s\n", kCommand,
                 static_cast<long long>(n), error.c_str());
  }
  if (summary.completed < summary.issued) {
    return ReportFailure(
        kCommand, absl::InternalError(absl::StrCat(summary.issued - summary.completed, " of ",
                                                   summary.issued, " samples failed")));
  }
  return kExitOk;
}

}  // namespace rackserve::client
