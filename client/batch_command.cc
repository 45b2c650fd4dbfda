// rackctl batch --in requests.jsonl --out results.jsonl [--concurrency N]: sends every request of
// the file through one SubmitBatchPacked stream (at most N outstanding, up to 64 per message),
// shows a progress bar with rate and ETA on stderr, and writes one result line per request, in
// the input's order. Exit 1 when a request failed (its line carries the error) or the stream
// broke.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/batch_jsonl.h"
#include "client/command.h"
#include "client/command_args.h"
#include "client/model_info.h"
#include "runtime/tools/progress_bar.h"

namespace rackserve::client {
namespace {

constexpr char kCommand[] = "batch";
constexpr int64_t kRequestsPerMessage = 64;

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

int RunBatch(const CommandContext& context, const std::vector<std::string>& argv) {
  absl::StatusOr<CommandArgs> args = CommandArgs::Parse(argv, {"in", "out", "concurrency"}, {});
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  const std::string in_path = args->String("in", ""), out_path = args->String("out", "");
  if (in_path.empty() || out_path.empty() || !args->positional().empty()) {
    return ReportUsage(kCommand,
                       absl::InvalidArgumentError("usage: rackctl batch --in requests.jsonl --out "
                                                  "results.jsonl [--concurrency N]"));
  }
  absl::StatusOr<int64_t> concurrency = args->Int("concurrency", 256, 1, 1 << 20);
  if (!concurrency.ok()) return ReportUsage(kCommand, concurrency.status());

  std::ifstream in(in_path);
  if (!in) return ReportFailure(kCommand, absl::NotFoundError("cannot read " + in_path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<RequestSpec>> requests = ParseRequestsJsonl(text.str(), in_path);
  if (!requests.ok()) return ReportFailure(kCommand, requests.status());
  std::ofstream out(out_path);
  if (!out) return ReportFailure(kCommand, absl::PermissionDeniedError("cannot write " + out_path));

  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());
  absl::StatusOr<v1::Topology> topology = (*rack)->Topology();
  if (!topology.ok()) return ReportFailure(kCommand, topology.status());
  const ModelInfo model = ReadModelInfo(topology->model());
  bool any_text = false;
  for (RequestSpec& spec : *requests) {
    if (spec.prompt.empty() || model.tokenizer == nullptr) {
      any_text = any_text || !spec.prompt.empty();
      continue;
    }
    absl::StatusOr<std::vector<int32_t>> ids = model.tokenizer->Encode(spec.prompt, true);
    if (!ids.ok()) return ReportFailure(kCommand, ids.status());
    spec.prompt_ids = *std::move(ids);
  }
  if (any_text) {
    std::fprintf(stderr, "rackctl batch: text prompts go to the coordinator as text: %s\n",
                 model.notes.c_str());
  }

  std::map<std::string, size_t> index;
  for (size_t i = 0; i < requests->size(); ++i) index[(*requests)[i].id] = i;
  std::vector<RequestResult> results(requests->size());
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].id = (*requests)[i].id;
    results[i].error = "UNAVAILABLE: no result (the batch stream ended first)";
  }

  grpc::ClientContext call;
  auto stream = (*rack)->stub().SubmitBatchPacked(&call);
  std::mutex mu;
  std::condition_variable cv;
  int64_t outstanding = 0;   // guarded by mu
  bool reader_done = false;  // guarded by mu
  std::thread writer([&] {
    for (size_t next = 0; next < requests->size();) {
      int64_t room = 0;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return outstanding < *concurrency || reader_done; });
        if (reader_done) break;
        room = std::min({*concurrency - outstanding, kRequestsPerMessage,
                         static_cast<int64_t>(requests->size() - next)});
        outstanding += room;
      }
      v1::GenerateRequestBatch batch;
      for (int64_t k = 0; k < room; ++k) {
        *batch.add_requests() = ToGenerateRequest((*requests)[next++]);
      }
      if (!stream->Write(batch)) break;
    }
    stream->WritesDone();
  });
  tools::ProgressBar progress("batch", "requests");
  int64_t done = 0, failed = 0;
  v1::CompletionBatch batch;
  while (stream->Read(&batch)) {
    for (const v1::Completion& completion : batch.completions()) {
      auto it = index.find(completion.request_id());
      if (it != index.end()) {
        RequestResult& r = results[it->second];
        r.token_ids.assign(completion.token_ids().begin(), completion.token_ids().end());
        r.finish_reason = FinishReasonName(completion.finish_reason());
        r.prompt_tokens = completion.prompt_tokens();
        r.queue_seconds = completion.timings().queue_seconds();
        r.ttft_seconds = completion.timings().ttft_seconds();
        r.total_seconds = completion.timings().total_seconds();
        r.error = completion.error_code() == 0 ? ""
                                               : absl::StrCat(CodeName(completion.error_code()),
                                                              ": ", completion.error_message());
        failed += completion.error_code() == 0 ? 0 : 1;
        if (model.tokenizer != nullptr && completion.error_code() == 0) {
          absl::StatusOr<std::string> decoded = model.tokenizer->Decode(r.token_ids);
          r.has_text = decoded.ok();
          if (decoded.ok()) r.text = *std::move(decoded);
        }
      }
      ++done;
    }
    progress.Update(done, static_cast<int64_t>(requests->size()));
    std::lock_guard<std::mutex> lock(mu);
    outstanding -= batch.completions_size();
    cv.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    reader_done = true;
    cv.notify_all();
  }
  writer.join();
  progress.Finish();
  const grpc::Status status = stream->Finish();
  for (const RequestResult& r : results) out << ResultJsonLine(r) << "\n";
  out.close();
  if (!status.ok()) {
    return ReportFailure(kCommand, (*rack)->Convert(status, "SubmitBatchPacked"));
  }
  const int64_t missing = static_cast<int64_t>(requests->size()) - done;
  if (failed > 0 || missing > 0) {
    return ReportFailure(
        kCommand, absl::InternalError(absl::StrCat(failed + missing, " of ", requests->size(),
                                                   " requests failed; see ", out_path)));
  }
  std::fprintf(stderr, "%zu requests done; results in %s\n", requests->size(), out_path.c_str());
  return kExitOk;
}

}  // namespace rackserve::client
