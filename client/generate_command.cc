// rackctl generate (--prompt TEXT | --ids 1,2,3) [sampling flags]: one request through the rack,
// its tokens printed as they arrive (text when a tokenizer loads here, else ids), then a line on
// stderr with the count, finish reason, TTFT and rate measured by the client.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/command_args.h"
#include "client/model_info.h"
#include "client/request_flags.h"

namespace rackserve::client {
namespace {

constexpr char kCommand[] = "generate";

}  // namespace

int RunGenerate(const CommandContext& context, const std::vector<std::string>& argv) {
  std::set<std::string> value_flags = SamplingValueFlags();
  value_flags.insert({"prompt", "ids"});
  absl::StatusOr<CommandArgs> args = CommandArgs::Parse(argv, value_flags, SamplingSwitches());
  if (!args.ok()) return ReportUsage(kCommand, args.status());
  if (!args->positional().empty()) {
    return ReportUsage(kCommand, absl::InvalidArgumentError(absl::StrCat(
                                     "unexpected argument \"", args->positional()[0], "\"")));
  }
  RequestSpec spec;
  if (absl::Status s = ReadSamplingFlags(*args, &spec); !s.ok()) return ReportUsage(kCommand, s);
  absl::StatusOr<std::vector<int32_t>> ids = args->IntList("ids");
  if (!ids.ok()) return ReportUsage(kCommand, ids.status());
  spec.prompt = args->String("prompt", "");
  spec.prompt_ids = *std::move(ids);
  if (spec.prompt.empty() == spec.prompt_ids.empty()) {
    return ReportUsage(
        kCommand, absl::InvalidArgumentError("give exactly one of --prompt TEXT and --ids 1,2,3"));
  }

  absl::StatusOr<std::unique_ptr<RackConnection>> rack = Connect(context);
  if (!rack.ok()) return ReportFailure(kCommand, rack.status());
  absl::StatusOr<v1::Topology> topology = (*rack)->Topology();
  if (!topology.ok()) return ReportFailure(kCommand, topology.status());
  const ModelInfo model = ReadModelInfo(topology->model());
  if (!spec.prompt.empty() && model.tokenizer != nullptr) {
    absl::StatusOr<std::vector<int32_t>> encoded = model.tokenizer->Encode(spec.prompt, true);
    if (!encoded.ok()) return ReportFailure(kCommand, encoded.status());
    spec.prompt_ids = *std::move(encoded);
  }
  if (model.tokenizer == nullptr) {
    std::fprintf(stderr, "rackctl generate: %s\n", model.notes.c_str());
  }

  const auto start = std::chrono::steady_clock::now();
  double ttft = 0;
  grpc::ClientContext call;
  auto stream = (*rack)->stub().Generate(&call, ToGenerateRequest(spec));
  std::vector<int32_t> tokens;
  std::string printed;  // text printed so far (decoding the whole output keeps pieces joined)
  v1::TokenChunk chunk;
  std::string finish;
  while (stream->Read(&chunk)) {
    if (tokens.empty() && chunk.token_ids_size() > 0) {
      ttft = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    for (int32_t id : chunk.token_ids()) {
      tokens.push_back(id);
      if (model.tokenizer == nullptr) std::printf("%s%d", tokens.size() == 1 ? "" : " ", id);
    }
    if (model.tokenizer != nullptr) {
      absl::StatusOr<std::string> text = model.tokenizer->Decode(tokens);
      if (text.ok() && text->size() > printed.size() &&
          text->compare(0, printed.size(), printed) == 0) {
        std::fputs(text->c_str() + printed.size(), stdout);
        printed = *std::move(text);
      }
    }
    std::fflush(stdout);
    if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      finish = FinishReasonName(chunk.finish_reason());
    }
  }
  std::printf("\n");
  const grpc::Status status = stream->Finish();
  if (!status.ok()) return ReportFailure(kCommand, (*rack)->Convert(status, "Generate"));
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "%zu tokens, finish: %s, TTFT %.1f ms, %.1f tok/s\n", tokens.size(),
               finish.c_str(), ttft * 1e3, total > 0 ? tokens.size() / total : 0.0);
  return kExitOk;
}

}  // namespace rackserve::client
