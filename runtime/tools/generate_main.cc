// rackserve-generate: loads a model directory and generates for token ids or text prompts on the
// engine, printing each completion and the throughput. See --help.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/base/status_macros.h"
#include "runtime/comm/file_rendezvous.h"
#include "runtime/comm/ucx_communicator.h"
#include "runtime/engine/cpu_shard_executor.h"
#include "runtime/engine/distributed_model_runner.h"
#include "runtime/engine/engine.h"
#include "runtime/io/safetensors_writer.h"
#include "runtime/model/tokenizer.h"
#include "runtime/parallel/world_config.h"
#include "runtime/tools/command_line.h"
#include "runtime/tools/rank_launcher.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, prompt, "", "a text prompt; needs the model's tokenizer.model");
ABSL_FLAG(std::string, prompt_file, "", "file with one text prompt per line");
ABSL_FLAG(std::vector<std::string>, prompt_ids, {},
          "token-id prompt(s): ids separated by spaces, prompts by commas, e.g. \"1 5 9,1 7\"");
ABSL_FLAG(int64_t, max_new_tokens, 32, "tokens to generate per prompt");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature; 0 = greedy");
ABSL_FLAG(int, top_k, 0, "top-k sampling; 0 = off");
ABSL_FLAG(double, top_p, 1.0, "top-p (nucleus) sampling in (0, 1]");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed (request i uses seed + i)");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past EOS up to --max_new_tokens");
ABSL_FLAG(std::string, logits_out, "",
          "write the last-position logits of each prompt to this float32 safetensors file "
          "(tensor logits.<i>, shape [vocab])");
ABSL_FLAG(std::string, backend, "cpu", "compute backend");
ABSL_FLAG(int, threads, 0, "CPU threads; 0 = all cores");
ABSL_FLAG(int64_t, kv_cache_mb, 512, "KV cache memory in MiB");
ABSL_FLAG(int, kv_block_size, 16, "tokens per KV block");
ABSL_FLAG(int64_t, max_tokens_per_step, 2048, "scheduler token budget per step");
ABSL_FLAG(int, max_running, 256, "most sequences per step");
ABSL_FLAG(std::string, quantize_format, "nvfp4",
          "FP4 format for bf16/fp32 checkpoints quantized at load: nvfp4 or mxfp4");
ABSL_FLAG(bool, print_ids, false, "print generated token ids instead of text");
ABSL_FLAG(int, tp, 1, "tensor-parallel ranks of the replica (processes on this machine)");
ABSL_FLAG(int, pp, 1, "pipeline-parallel stages of the replica (processes on this machine)");
ABSL_FLAG(std::vector<std::string>, pp_layers, {},
          "layers per pipeline stage, e.g. 3,5 (default: an even split)");
ABSL_FLAG(int, rank, -1,
          "internal: this process's rank in a tp x pp replica (set by the launcher)");
ABSL_FLAG(std::string, rendezvous_dir, "", "internal: the replica's rendezvous directory");
ABSL_FLAG(double, comm_timeout_s, 30, "seconds a rank waits on another before failing");

namespace rackserve::tools {
namespace {

constexpr char kTool[] = "rackserve-generate";

template <typename T>
T OrFail(absl::StatusOr<T> v) {
  if (!v.ok()) Fail(kTool, v.status().ToString());
  return *std::move(v);
}
void OrFail(const absl::Status& s) {
  if (!s.ok()) Fail(kTool, s.ToString());
}

std::vector<std::vector<int32_t>> ParseIdPrompts(const std::vector<std::string>& prompts) {
  std::vector<std::vector<int32_t>> out;
  for (size_t p = 0; p < prompts.size(); ++p) {
    std::vector<int32_t> ids;
    for (absl::string_view piece : absl::StrSplit(prompts[p], ' ', absl::SkipEmpty())) {
      int32_t id;
      if (!absl::SimpleAtoi(piece, &id)) {
        Fail(kTool, absl::StrCat("--prompt_ids: prompt ", p, ": '", std::string(piece),
                                 "' is not a token id"));
      }
      ids.push_back(id);
    }
    out.push_back(std::move(ids));
  }
  return out;
}

engine::EngineOptions EngineOptionsFromFlags() {
  engine::EngineOptions options;
  options.backend = absl::GetFlag(FLAGS_backend);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mb) << 20;
  options.kv_block_size = absl::GetFlag(FLAGS_kv_block_size);
  options.scheduler.max_tokens_per_step = absl::GetFlag(FLAGS_max_tokens_per_step);
  options.scheduler.max_running = absl::GetFlag(FLAGS_max_running);
  options.quantize_format = OrFail(numerics::ParseFp4Format(absl::GetFlag(FLAGS_quantize_format)));
  return options;
}

// The model replica this process serves in. Members are destroyed in reverse order: the engine
// (and its runner) before the communicators it uses.
struct Replica {
  std::unique_ptr<comm::Communicator> world;  // all ranks (multi-process replicas only)
  std::unique_ptr<comm::Communicator> tp;     // this stage's TP group (tp > 1 only)
  std::unique_ptr<engine::Engine> engine;     // leader only; null on a follower that finished
  engine::DistributedModelRunner* distributed = nullptr;  // owned by engine
};

absl::StatusOr<std::unique_ptr<comm::Communicator>> Connect(const std::string& dir, int size,
                                                            int rank, const std::string& layout,
                                                            const std::string& model_dir) {
  comm::WorldSpec spec;
  spec.size = size;
  spec.layout = layout;
  spec.model = std::filesystem::absolute(model_dir).lexically_normal().string();
  comm::UcxOptions ucx;
  ucx.timeout = absl::Seconds(absl::GetFlag(FLAGS_comm_timeout_s));
  std::unique_ptr<comm::Rendezvous> rendezvous = comm::MakeFileRendezvous(dir);
  return comm::CreateUcxCommunicator(spec, rank, *rendezvous, ucx);
}

// One process: loads the whole model into an Engine. A rank of a tp x pp replica: connects to the
// other ranks, loads its shard, then either leads (returns the engine) or follows the leader's
// steps until it shuts the replica down (returns no engine).
absl::StatusOr<Replica> BuildReplica(const std::string& model_dir,
                                     const engine::EngineOptions& options) {
  Replica replica;
  const int tp = absl::GetFlag(FLAGS_tp), pp = absl::GetFlag(FLAGS_pp);
  if (tp * pp == 1) {
    RS_ASSIGN_OR_RETURN(replica.engine, engine::Engine::Load(model_dir, options));
    return replica;
  }
  RS_ASSIGN_OR_RETURN(parallel::WorldConfig world,
                      parallel::WorldConfig::Create(tp, pp, absl::GetFlag(FLAGS_rank)));
  const std::string dir = absl::GetFlag(FLAGS_rendezvous_dir);
  RS_ASSIGN_OR_RETURN(replica.world,
                      Connect(dir + "/world", world.size(), world.rank, world.Layout(), model_dir));
  if (tp > 1) {
    RS_ASSIGN_OR_RETURN(replica.tp,
                        Connect(absl::StrCat(dir, "/tp-stage", world.stage()), tp, world.tp_rank(),
                                absl::StrCat(world.Layout(), "-stage", world.stage()), model_dir));
  }
  std::vector<int64_t> stage_layers;
  for (const std::string& n : absl::GetFlag(FLAGS_pp_layers)) {
    int64_t layers;
    if (!absl::SimpleAtoi(n, &layers)) {
      return absl::InvalidArgumentError(absl::StrCat("--pp_layers: '", n, "' is not a number"));
    }
    stage_layers.push_back(layers);
  }
  auto pool = std::make_unique<base::ThreadPool>(options.num_threads);
  RS_ASSIGN_OR_RETURN(
      engine::LoadedShard shard,
      engine::LoadCpuShard(model_dir, world, stage_layers, options, pool.get(), replica.tp.get()));
  std::unique_ptr<engine::CpuShardExecutor> executor = std::move(shard.executor);
  if (world.rank != 0) {
    engine::PipelineStats stats;
    RS_RETURN_IF_ERROR(engine::RunFollower(*replica.world, *executor, &stats));
    std::fprintf(stderr, "%s: rank %d (stage %d, tp rank %d): %lld steps, busy %.3f s of %.3f s\n",
                 kTool, world.rank, world.stage(), world.tp_rank(),
                 static_cast<long long>(stats.steps), stats.compute_seconds, stats.step_seconds);
    return replica;
  }
  auto runner =
      std::make_unique<engine::DistributedModelRunner>(replica.world.get(), std::move(executor));
  replica.distributed = runner.get();
  RS_ASSIGN_OR_RETURN(replica.engine, engine::Engine::Create(std::move(runner), shard.kv, options,
                                                             std::move(pool)));
  return replica;
}

int Main(int argc, char** argv) {
  ParseCommandLine(argc, argv,
                   "rackserve-generate --model DIR (--prompt TEXT | --prompt_ids \"1 2 3\" | "
                   "--prompt_file FILE) [options]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) Fail(kTool, "--model is required");
  const int world_size = absl::GetFlag(FLAGS_tp) * absl::GetFlag(FLAGS_pp);
  if (world_size < 1) Fail(kTool, "--tp and --pp must be at least 1");
  if (world_size > 1 && absl::GetFlag(FLAGS_rank) < 0) {
    // Launcher: start the replica's ranks (this program again) and wait for them.
    const absl::Status status = RunRankProcesses(
        world_size, absl::GetFlag(FLAGS_pp), std::vector<std::string>(argv, argv + argc),
        absl::Seconds(absl::GetFlag(FLAGS_comm_timeout_s)));
    if (!status.ok()) Fail(kTool, status.ToString());
    return 0;
  }

  const auto load_start = std::chrono::steady_clock::now();
  Replica replica = OrFail(BuildReplica(model_dir, EngineOptionsFromFlags()));
  if (replica.engine == nullptr) return 0;  // a follower rank: its work is done
  engine::Engine* engine = replica.engine.get();
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();

  std::vector<std::string> texts;
  if (std::string text = absl::GetFlag(FLAGS_prompt); !text.empty()) texts.push_back(text);
  if (const std::string file = absl::GetFlag(FLAGS_prompt_file); !file.empty()) {
    std::ifstream in(file);
    if (!in) Fail(kTool, absl::StrCat("--prompt_file: cannot open ", file));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) texts.push_back(line);
    }
  }
  std::vector<std::vector<int32_t>> prompts = ParseIdPrompts(absl::GetFlag(FLAGS_prompt_ids));
  std::unique_ptr<model::Tokenizer> tokenizer;
  const std::string tokenizer_path = model_dir + "/tokenizer.model";
  if (std::ifstream(tokenizer_path).good()) {
    tokenizer = OrFail(model::Tokenizer::Load(tokenizer_path));
  }
  if (!texts.empty()) {
    if (tokenizer == nullptr) {
      Fail(kTool, absl::StrCat("text prompts need ", tokenizer_path, "; use --prompt_ids"));
    }
    for (const std::string& text : texts) prompts.push_back(OrFail(tokenizer->Encode(text, true)));
  }
  if (prompts.empty()) Fail(kTool, "no prompt: give --prompt, --prompt_file or --prompt_ids");

  const bool want_logits = !absl::GetFlag(FLAGS_logits_out).empty();
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::Request r;
    r.id = i;
    r.prompt = prompts[i];
    r.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
    r.sampling.top_k = absl::GetFlag(FLAGS_top_k);
    r.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
    r.sampling.seed = absl::GetFlag(FLAGS_seed) + i;
    r.sampling.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
    r.sampling.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
    r.return_logits = want_logits;
    prompt_tokens += static_cast<int64_t>(r.prompt.size());
    OrFail(engine->Submit(std::move(r)));
  }

  std::vector<std::vector<int32_t>> outputs(prompts.size());
  std::vector<std::string> finish(prompts.size());
  std::map<int64_t, std::vector<float>> first_logits;
  double prefill_s = 0, decode_s = 0;
  int64_t generated = 0;
  const auto start = std::chrono::steady_clock::now();
  while (engine->has_work()) {
    engine::StepStats stats;
    std::vector<engine::TokenEvent> events = OrFail(engine->Step(&stats));
    (stats.prefill_tokens > 0 ? prefill_s : decode_s) += stats.seconds;
    for (engine::TokenEvent& e : events) {
      if (e.token >= 0) {
        outputs[e.id].push_back(e.token);
        ++generated;
        if (e.index == 0 && want_logits) first_logits[e.id] = std::move(e.logits);
      }
      if (e.finish != sampling::FinishReason::kNone) {
        finish[e.id] = std::string(sampling::FinishReasonName(e.finish));
      }
    }
  }
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string text;
    if (tokenizer != nullptr && !absl::GetFlag(FLAGS_print_ids)) {
      text = OrFail(tokenizer->Decode(outputs[i]));
    } else {
      text = absl::StrJoin(outputs[i], " ");
    }
    std::printf("[%zu] (%s, %zu tokens) %s\n", i, finish[i].c_str(), outputs[i].size(),
                text.c_str());
  }
  if (replica.distributed != nullptr) {
    OrFail(replica.distributed->Shutdown());
    const engine::PipelineStats& ps = replica.distributed->stats();
    std::fprintf(stderr,
                 "%s: replica tp %d x pp %d: %lld steps, leader busy %.3f s of %.3f s "
                 "(waiting %.0f%%: pipeline bubble and transfers)\n",
                 kTool, absl::GetFlag(FLAGS_tp), absl::GetFlag(FLAGS_pp),
                 static_cast<long long>(ps.steps), ps.compute_seconds, ps.step_seconds,
                 100.0 * ps.bubble());
  }
  if (want_logits) {
    io::SafetensorsWriter writer;
    writer.SetMetadata("producer", kTool);
    for (const auto& [id, logits] : first_logits) {
      OrFail(writer.AddF32(absl::StrCat("logits.", id), {static_cast<int64_t>(logits.size())},
                           logits));
    }
    OrFail(writer.WriteFile(absl::GetFlag(FLAGS_logits_out)));
  }
  std::fprintf(stderr,
               "%s: load %.2f s | %zu prompts, %lld prompt tokens, %lld generated in %.3f s | "
               "prefill %.0f tok/s | decode %.1f tok/s | overall %.1f generated tok/s\n",
               kTool, load_s, prompts.size(), static_cast<long long>(prompt_tokens),
               static_cast<long long>(generated), total_s,
               prefill_s > 0 ? prompt_tokens / prefill_s : 0.0,
               decode_s > 0 ? (generated - static_cast<double>(prompts.size())) / decode_s : 0.0,
               total_s > 0 ? generated / total_s : 0.0);
  return 0;
}

}  // namespace
}  // namespace rackserve::tools

int main(int argc, char** argv) { return rackserve::tools::Main(argc, argv); }
