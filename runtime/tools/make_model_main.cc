// rackserve-make-model: writes a random Llama checkpoint directory (seeded; bf16 or NVFP4) of a
// preset or any shape, with a small trained tokenizer. See --help.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/thread_pool.h"
#include "runtime/model/model_generator.h"
#include "runtime/tools/command_line.h"

ABSL_FLAG(std::string, out, "", "output directory");
ABSL_FLAG(std::string, preset, "tiny",
          "base shape: tiny, small, 100m, llama2-7b, llama2-70b, llama3.1-8b");
ABSL_FLAG(std::string, format, "nvfp4", "checkpoint format: nvfp4 (ModelOpt layout) or bf16");
ABSL_FLAG(uint64_t, seed, 0, "random seed");
ABSL_FLAG(bool, tokenizer, true,
          "train and write tokenizer.model (only for models with Llama 2's bos id 1)");
ABSL_FLAG(int64_t, max_shard_mb, 4096, "largest safetensors shard in MiB");
ABSL_FLAG(int64_t, vocab_size, 0, "override the preset (0 keeps it)");
ABSL_FLAG(int64_t, hidden_size, 0, "override the preset (0 keeps it)");
ABSL_FLAG(int64_t, intermediate_size, 0, "override the preset (0 keeps it)");
ABSL_FLAG(int64_t, num_layers, 0, "override the preset (0 keeps it)");
ABSL_FLAG(int64_t, num_heads, 0, "override the preset (0 keeps it)");
ABSL_FLAG(int64_t, num_kv_heads, 0, "override the preset (0 keeps it)");
ABSL_FLAG(int64_t, head_dim, 0, "override the preset (0 keeps it; else hidden / heads)");
ABSL_FLAG(int64_t, max_position_embeddings, 0, "override the preset (0 keeps it)");
ABSL_FLAG(bool, tie_word_embeddings, false, "share the embedding and the LM head");

namespace rackserve::tools {
namespace {

constexpr char kTool[] = "rackserve-make-model";

int Main(int argc, char** argv) {
  ParseCommandLine(argc, argv,
                   "rackserve-make-model --out DIR [--preset NAME] [--format nvfp4|bf16]");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) Fail(kTool, "--out is required");
  auto preset = model::PresetModelConfig(absl::GetFlag(FLAGS_preset));
  if (!preset.ok()) Fail(kTool, preset.status().ToString());
  model::ModelConfig c = *preset;
  auto override_if_set = [](int64_t flag, int64_t& field) {
    if (flag != 0) field = flag;
  };
  override_if_set(absl::GetFlag(FLAGS_vocab_size), c.vocab_size);
  override_if_set(absl::GetFlag(FLAGS_hidden_size), c.hidden_size);
  override_if_set(absl::GetFlag(FLAGS_intermediate_size), c.intermediate_size);
  override_if_set(absl::GetFlag(FLAGS_num_layers), c.num_hidden_layers);
  override_if_set(absl::GetFlag(FLAGS_num_heads), c.num_attention_heads);
  override_if_set(absl::GetFlag(FLAGS_num_kv_heads), c.num_key_value_heads);
  override_if_set(absl::GetFlag(FLAGS_max_position_embeddings), c.max_position_embeddings);
  c.head_dim = absl::GetFlag(FLAGS_head_dim) != 0 ? absl::GetFlag(FLAGS_head_dim)
                                                  : c.hidden_size / c.num_attention_heads;
  if (absl::GetFlag(FLAGS_tie_word_embeddings)) c.tie_word_embeddings = true;

  base::ThreadPool pool;
  model::RandomModelOptions options;
  options.config = c;
  options.seed = absl::GetFlag(FLAGS_seed);
  auto format = model::ParseCheckpointFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) Fail(kTool, format.status().ToString());
  options.format = *format;
  options.with_tokenizer = absl::GetFlag(FLAGS_tokenizer) && c.bos_token_id == 1;
  options.max_shard_bytes = absl::GetFlag(FLAGS_max_shard_mb) << 20;
  options.pool = &pool;
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status s = model::WriteRandomModel(out, options); !s.ok()) Fail(kTool, s.ToString());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: wrote %s (%s, %lld layers, hidden %lld, vocab %lld%s) in %.1f s\n", kTool,
              out.c_str(), absl::GetFlag(FLAGS_format).c_str(),
              static_cast<long long>(c.num_hidden_layers), static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.vocab_size),
              options.with_tokenizer ? ", tokenizer.model" : "", seconds);
  return 0;
}

}  // namespace
}  // namespace rackserve::tools

int main(int argc, char** argv) { return rackserve::tools::Main(argc, argv); }
