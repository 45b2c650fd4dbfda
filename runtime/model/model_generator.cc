#include "runtime/model/model_generator.h"

#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/status_macros.h"
#include "runtime/io/safetensors_writer.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/llama_weights.h"
#include "runtime/model/modelopt_nvfp4.h"
#include "runtime/model/quant_config.h"
#include "runtime/model/tokenizer_trainer.h"
#include "runtime/numerics/fp4_matrix.h"

namespace rackserve::model {
namespace {

ModelConfig LlamaShape(int64_t vocab, int64_t hidden, int64_t ffn, int64_t layers, int64_t heads,
                       int64_t kv_heads, int64_t max_pos, bool tied) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = max_pos;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

const std::map<std::string, ModelConfig, std::less<>>& Presets() {
  static const auto* presets = [] {
    auto* m = new std::map<std::string, ModelConfig, std::less<>>();
    (*m)["tiny"] = LlamaShape(512, 128, 352, 2, 4, 2, 512, false);
    (*m)["small"] = LlamaShape(1024, 256, 704, 4, 8, 2, 2048, false);
    (*m)["100m"] = LlamaShape(32000, 768, 2048, 8, 12, 4, 2048, false);
    (*m)["llama2-7b"] = LlamaShape(32000, 4096, 11008, 32, 32, 32, 4096, false);
    (*m)["llama2-70b"] = LlamaShape(32000, 8192, 28672, 80, 64, 8, 4096, false);
    ModelConfig l3 = LlamaShape(128256, 4096, 14336, 32, 32, 8, 131072, false);
    l3.rope_theta = 500000.0;
    l3.rope_scaling.type = RopeScaling::Type::kLlama3;
    l3.rope_scaling.factor = 8.0;
    l3.rope_scaling.low_freq_factor = 1.0;
    l3.rope_scaling.high_freq_factor = 4.0;
    l3.rope_scaling.original_max_position_embeddings = 8192;
    l3.bos_token_id = 128000;
    l3.eos_token_ids = {128001, 128008, 128009};
    (*m)["llama3.1-8b"] = l3;
    return m;
  }();
  return *presets;
}

// Gaussian values with standard deviation `stddev` around `mean`, seeded per tensor so that
// tensors can be generated in any order and on any thread.
std::vector<float> RandomValues(int64_t n, float mean, float stddev, uint64_t seed,
                                std::string_view name) {
  std::seed_seq seq{seed, static_cast<uint64_t>(std::hash<std::string_view>()(name))};
  std::mt19937_64 rng(seq);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

struct TensorJob {
  std::string name;
  std::vector<int64_t> shape;
  float mean;
  float stddev;
  bool fp4_linear;  // decoder linear: quantized when the format is NVFP4
};

std::vector<TensorJob> TensorJobs(const ModelConfig& c) {
  const float hidden_std = 1.0f / std::sqrt(static_cast<float>(c.hidden_size));
  std::vector<TensorJob> jobs;
  jobs.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, 0.0f, 1.0f, false});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    jobs.push_back(
        {LayerModuleName(i, "input_layernorm.weight"), {c.hidden_size}, 1.0f, 0.1f, false});
    jobs.push_back({LayerModuleName(i, "post_attention_layernorm.weight"),
                    {c.hidden_size},
                    1.0f,
                    0.1f,
                    false});
    for (std::string_view suffix : kLlamaLinearModules) {
      const LinearShape s = LlamaLinearShape(c, suffix);
      jobs.push_back({LayerModuleName(i, suffix),
                      {s.rows, s.cols},
                      0.0f,
                      1.0f / std::sqrt(static_cast<float>(s.cols)),
                      true});
    }
  }
  jobs.push_back({"model.norm.weight", {c.hidden_size}, 1.0f, 0.1f, false});
  // A peaked output distribution keeps greedy decoding away from near-ties.
  if (!c.tie_word_embeddings) {
    jobs.push_back(
        {"lm_head.weight", {c.vocab_size, c.hidden_size}, 0.0f, 4.0f * hidden_std, false});
  }
  return jobs;
}

}  // namespace

absl::StatusOr<CheckpointFormat> ParseCheckpointFormat(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower == "bf16") return CheckpointFormat::kBf16;
  if (lower == "nvfp4") return CheckpointFormat::kNvfp4;
  return absl::InvalidArgumentError(
      absl::StrCat("checkpoint format '", std::string(name), "' is not one of bf16, nvfp4"));
}

std::vector<std::string> PresetModelNames() {
  std::vector<std::string> names;
  for (const auto& [name, config] : Presets()) names.push_back(name);
  return names;
}

absl::StatusOr<ModelConfig> PresetModelConfig(std::string_view name) {
  const auto& presets = Presets();
  auto it = presets.find(name);
  if (it == presets.end()) {
    return absl::NotFoundError(
        absl::StrCat("no model preset named '", std::string(name),
                     "'; presets: ", absl::StrJoin(PresetModelNames(), ", ")));
  }
  return it->second;
}

absl::Status WriteRandomModel(const std::string& dir, const RandomModelOptions& options) {
  const ModelConfig& c = options.config;
  RS_RETURN_IF_ERROR(c.Validate());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));

  const std::vector<TensorJob> jobs = TensorJobs(c);
  io::SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("producer", "rackserve-make-model");
  std::mutex mu;  // guards writer and first_error
  absl::Status first_error;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const TensorJob& job = jobs[j];
      int64_t n = 1;
      for (int64_t d : job.shape) n *= d;
      std::vector<float> values = RandomValues(n, job.mean, job.stddev, options.seed, job.name);
      absl::Status status;
      if (job.fp4_linear && options.format == CheckpointFormat::kNvfp4) {
        auto m = numerics::QuantizeFp4(values, job.shape[0], job.shape[1],
                                       numerics::Fp4Format::kNvfp4, job.name);
        std::lock_guard<std::mutex> lock(mu);
        status = m.ok() ? AddNvfp4Linear(writer, job.name, *m) : m.status();
      } else {
        const std::string name = job.fp4_linear ? job.name + ".weight" : job.name;
        std::lock_guard<std::mutex> lock(mu);
        status = writer.AddBf16(name, job.shape, values);
      }
      if (!status.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = status;
      }
    }
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(static_cast<int64_t>(jobs.size()), 1, run);
  } else {
    run(0, static_cast<int64_t>(jobs.size()));
  }
  RS_RETURN_IF_ERROR(first_error);

  RS_RETURN_IF_ERROR(writer.WriteCheckpoint(dir, options.max_shard_bytes));
  RS_RETURN_IF_ERROR(internal::WriteFileContents(dir + "/config.json", c.ToJson()));
  const std::string quant_path = dir + "/hf_quant_config.json";
  if (options.format == CheckpointFormat::kNvfp4) {
    QuantConfig quant;
    quant.quant_algo = "NVFP4";
    quant.group_size = 16;
    quant.exclude_modules = {"lm_head"};
    RS_RETURN_IF_ERROR(internal::WriteFileContents(quant_path, quant.ToJson()));
  } else {
    std::filesystem::remove(quant_path, ec);
  }
  if (options.with_tokenizer)
    RS_RETURN_IF_ERROR(TrainTokenizer(dir, static_cast<int>(c.vocab_size)));
  return absl::OkStatus();
}

}  // namespace rackserve::model
