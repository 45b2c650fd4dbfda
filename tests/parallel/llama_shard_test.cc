// Tests LoadLlamaShard on generated models (NVFP4 and bf16 checkpoints) for tp 1/2/4 x pp 1/2:
// every local matrix is bit-identical to the matching slice of LoadLlamaWeights' full matrix, the
// TP shards of a stage put together give back the full matrices, each layer lives in exactly one
// stage, tied embeddings, and the errors (unshardable config, plan that does not fit the model,
// misaligned FP4 blocks, shape mismatch, layers outside the stage never read).
#include "runtime/parallel/llama_shard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/base/status_macros.h"
#include "runtime/base/thread_pool.h"
#include "runtime/model/model_generator.h"
#include "runtime/parallel/fp4_slice.h"

namespace rackserve::parallel {
namespace {

using model::CheckpointFormat;
using model::LlamaWeights;
using numerics::Fp4Format;
using numerics::Fp4Matrix;
using ::testing::HasSubstr;

constexpr size_t kQ = 0, kK = 1, kV = 2, kO = 3, kGate = 4, kUp = 5, kDown = 6;

// The "tiny" preset (4 query heads, 2 kv heads, head_dim 32, 2 layers) with 384 FFN columns, so
// that tp 4 leaves 96 per rank: whole NVFP4 and MXFP4 blocks (the preset's 352 gives 88).
model::ModelConfig ShardableTiny(bool tied) {
  auto config = model::PresetModelConfig("tiny");
  RS_CHECK(config.ok());
  config->intermediate_size = 384;
  config->tie_word_embeddings = tied;
  return *config;
}

// A random model written into a fresh directory under the test temp dir, removed on destruction.
class ModelDir {
 public:
  ModelDir(const std::string& name, const model::ModelConfig& config, CheckpointFormat format)
      : path_(::testing::TempDir() + "rackserve_llama_shard_" + name + "_XXXXXX") {
    RS_CHECK(::mkdtemp(path_.data()) != nullptr);
    model::RandomModelOptions options;
    options.config = config;
    options.seed = 7;
    options.format = format;
    options.with_tokenizer = false;
    const absl::Status status = model::WriteRandomModel(path_, options);
    EXPECT_TRUE(status.ok()) << status;
  }
  ~ModelDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ModelDir(const ModelDir&) = delete;
  ModelDir& operator=(const ModelDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void OverwriteConfig(const std::string& dir, const model::ModelConfig& config) {
  std::ofstream(dir + "/config.json", std::ios::trunc) << config.ToJson();
}

ShardPlan Plan(const model::ModelConfig& config, int tp, int pp, int rank, int fp4_block) {
  auto world = WorldConfig::Create(tp, pp, rank);
  RS_CHECK(world.ok());
  auto plan = PlanShard(config, *world, {}, fp4_block);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : ShardPlan{};
}

void ExpectSameMatrix(const Fp4Matrix& got, const Fp4Matrix& want, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(got.format, want.format);
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.cols, want.cols);
  EXPECT_EQ(got.tensor_scale, want.tensor_scale);
  EXPECT_TRUE(got.packed == want.packed);
  EXPECT_TRUE(got.scales == want.scales);
}

// The rows [begin, begin + rows) of a row-major float matrix with `cols` columns.
std::vector<float> Rows(const std::vector<float>& m, int64_t cols, int64_t begin, int64_t rows) {
  return std::vector<float>(m.begin() + begin * cols, m.begin() + (begin + rows) * cols);
}

// Row slices stacked in order.
Fp4Matrix StackRows(const std::vector<const Fp4Matrix*>& parts) {
  Fp4Matrix out = *parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    out.rows += parts[i]->rows;
    out.packed.insert(out.packed.end(), parts[i]->packed.begin(), parts[i]->packed.end());
    out.scales.insert(out.scales.end(), parts[i]->scales.begin(), parts[i]->scales.end());
  }
  return out;
}

// Column slices side by side, in order.
Fp4Matrix StackCols(const std::vector<const Fp4Matrix*>& parts) {
  Fp4Matrix out = *parts[0];
  out.cols = 0;
  out.packed.clear();
  out.scales.clear();
  for (const Fp4Matrix* part : parts) out.cols += part->cols;
  for (int64_t r = 0; r < out.rows; ++r) {
    for (const Fp4Matrix* part : parts) {
      const int64_t packed_row = part->cols / 2;
      const int64_t scales_row = part->scales_per_row();
      out.packed.insert(out.packed.end(), part->packed.begin() + r * packed_row,
                        part->packed.begin() + (r + 1) * packed_row);
      out.scales.insert(out.scales.end(), part->scales.begin() + r * scales_row,
                        part->scales.begin() + (r + 1) * scales_row);
    }
  }
  return out;
}

// The slice of the full layer `full` that `plan` holds, per kLlamaLinearModules slot.
Fp4Matrix ExpectedLinear(const model::LlamaLayerWeights& full, size_t slot, const ShardPlan& plan,
                         int64_t head_dim) {
  const Fp4Matrix& m = full.linears[slot];
  switch (slot) {
    case kQ:
      return SliceFp4Rows(m, plan.q_head_begin * head_dim, plan.num_q_heads * head_dim);
    case kK:
    case kV:
      return SliceFp4Rows(m, plan.kv_head_begin * head_dim, plan.num_kv_heads * head_dim);
    case kO:
      return *SliceFp4Cols(m, plan.q_head_begin * head_dim, plan.num_q_heads * head_dim);
    case kGate:
    case kUp:
      return SliceFp4Rows(m, plan.ffn_begin, plan.ffn_size);
    default:
      return *SliceFp4Cols(m, plan.ffn_begin, plan.ffn_size);
  }
}

// One checkpoint flavour: what is on disk and what float linears are quantized to.
struct Flavour {
  const char* name;
  CheckpointFormat format;
  Fp4Format quantize_format;
  bool tied;
};
constexpr Flavour kFlavours[] = {
    {"nvfp4", CheckpointFormat::kNvfp4, Fp4Format::kNvfp4, false},
    {"bf16_to_nvfp4", CheckpointFormat::kBf16, Fp4Format::kNvfp4, false},
    {"bf16_to_mxfp4", CheckpointFormat::kBf16, Fp4Format::kMxfp4, false},
    {"tied_bf16_to_nvfp4", CheckpointFormat::kBf16, Fp4Format::kNvfp4, true},
};

// A generated model and its unsharded load.
struct Model {
  Model(const std::string& name, const model::ModelConfig& config, CheckpointFormat format,
        Fp4Format quantize_format)
      : dir(name, config, format) {
    model::LoadOptions options;
    options.quantize_format = quantize_format;
    auto loaded = model::LoadLlamaWeights(dir.path(), options);
    RS_CHECK(loaded.ok());
    full = *std::move(loaded);
  }

  ModelDir dir;
  LlamaWeights full;
};

class LlamaShardTest : public ::testing::TestWithParam<std::tuple<Flavour, int, int>> {
 protected:
  // The models are generated once for the whole suite and removed after it.
  static void SetUpTestSuite() { models_ = new std::map<std::string, std::unique_ptr<Model>>(); }
  static void TearDownTestSuite() {
    delete models_;
    models_ = nullptr;
  }

  const Model& ModelFor(const Flavour& flavour) {
    std::unique_ptr<Model>& slot = (*models_)[flavour.name];
    if (slot == nullptr) {
      slot = std::make_unique<Model>(flavour.name, ShardableTiny(flavour.tied), flavour.format,
                                     flavour.quantize_format);
    }
    return *slot;
  }

  const Flavour& flavour() const { return std::get<0>(GetParam()); }
  int tp() const { return std::get<1>(GetParam()); }
  int pp() const { return std::get<2>(GetParam()); }

  // Loads every rank's shard, in rank order.
  std::vector<LlamaShard> LoadAll(const Model& model) {
    model::LoadOptions options;
    options.quantize_format = flavour().quantize_format;
    options.pool = &pool_;
    std::vector<LlamaShard> shards;
    for (int rank = 0; rank < tp() * pp(); ++rank) {
      const ShardPlan plan = Plan(model.full.config, tp(), pp(), rank,
                                  numerics::Fp4BlockSize(flavour().quantize_format));
      auto shard = LoadLlamaShard(model.dir.path(), plan, options);
      EXPECT_TRUE(shard.ok()) << shard.status();
      if (!shard.ok()) return {};
      EXPECT_EQ(shard->plan, plan);
      shards.push_back(*std::move(shard));
    }
    return shards;
  }

  static std::map<std::string, std::unique_ptr<Model>>* models_;
  base::ThreadPool pool_{2};
};

std::map<std::string, std::unique_ptr<Model>>* LlamaShardTest::models_ = nullptr;

TEST_P(LlamaShardTest, EveryLocalTensorIsTheMatchingSliceOfTheFullModel) {
  const Model& model = ModelFor(flavour());
  const LlamaWeights& full = model.full;
  const model::ModelConfig& c = full.config;
  const std::vector<LlamaShard> shards = LoadAll(model);
  ASSERT_EQ(shards.size(), static_cast<size_t>(tp() * pp()));
  for (const LlamaShard& shard : shards) {
    const ShardPlan& plan = shard.plan;
    SCOPED_TRACE("rank " + std::to_string(plan.world.rank));
    EXPECT_EQ(shard.config, c);
    ASSERT_EQ(shard.layers.size(), static_cast<size_t>(plan.layers.size()));
    for (int64_t i = 0; i < plan.layers.size(); ++i) {
      const model::LlamaLayerWeights& got = shard.layers[i];
      const model::LlamaLayerWeights& want = full.layers[plan.layers.begin + i];
      EXPECT_EQ(got.input_norm, want.input_norm);
      EXPECT_EQ(got.post_attention_norm, want.post_attention_norm);
      for (size_t slot = 0; slot < model::kLlamaLinearModules.size(); ++slot) {
        ExpectSameMatrix(
            got.linears[slot], ExpectedLinear(want, slot, plan, c.head_dim),
            model::LayerModuleName(plan.layers.begin + i, model::kLlamaLinearModules[slot]));
      }
    }
    const std::vector<float> vocab_rows =
        Rows(full.embed_tokens, c.hidden_size, plan.vocab_begin, plan.vocab_size);
    if (plan.world.first_stage()) {
      EXPECT_EQ(shard.embed_tokens, vocab_rows);
    } else {
      EXPECT_TRUE(shard.embed_tokens.empty());
    }
    if (plan.world.last_stage()) {
      EXPECT_EQ(shard.final_norm, full.final_norm);
      EXPECT_EQ(shard.lm_head,
                Rows(full.lm_head_matrix(), c.hidden_size, plan.vocab_begin, plan.vocab_size));
      if (c.tie_word_embeddings) {
        EXPECT_EQ(shard.lm_head, vocab_rows);
      }
    } else {
      EXPECT_TRUE(shard.final_norm.empty());
      EXPECT_TRUE(shard.lm_head.empty());
    }
  }
}

TEST_P(LlamaShardTest, TpShardsOfAStageReconstructTheFullModel) {
  const Model& model = ModelFor(flavour());
  const LlamaWeights& full = model.full;
  const int64_t hidden = full.config.hidden_size;
  const std::vector<LlamaShard> shards = LoadAll(model);
  ASSERT_EQ(shards.size(), static_cast<size_t>(tp() * pp()));
  std::vector<int> stage_of_layer(full.layers.size(), -1);
  for (int stage = 0; stage < pp(); ++stage) {
    const LlamaShard& first = shards[stage * tp()];
    const LayerRange layers = first.plan.layers;
    for (int64_t layer = layers.begin; layer < layers.end; ++layer) {
      EXPECT_EQ(stage_of_layer[layer], -1) << "layer " << layer << " in two stages";
      stage_of_layer[layer] = stage;
    }
    for (int64_t i = 0; i < layers.size(); ++i) {
      SCOPED_TRACE("layer " + std::to_string(layers.begin + i));
      std::vector<std::vector<const Fp4Matrix*>> parts(model::kLlamaLinearModules.size());
      int64_t last_kv_head = -1;
      for (int t = 0; t < tp(); ++t) {
        const LlamaShard& shard = shards[stage * tp() + t];
        EXPECT_EQ(shard.plan.layers, layers);
        for (size_t slot = 0; slot < parts.size(); ++slot) {
          const bool kv = slot == kK || slot == kV;
          // A replicated kv head counts once.
          if (kv && shard.plan.kv_head_begin == last_kv_head) continue;
          parts[slot].push_back(&shard.layers[i].linears[slot]);
        }
        last_kv_head = shard.plan.kv_head_begin;
      }
      for (size_t slot = 0; slot < parts.size(); ++slot) {
        const bool columns = slot == kO || slot == kDown;
        ExpectSameMatrix(columns ? StackCols(parts[slot]) : StackRows(parts[slot]),
                         full.layers[layers.begin + i].linears[slot],
                         std::string(model::kLlamaLinearModules[slot]));
      }
    }
  }
  for (size_t layer = 0; layer < stage_of_layer.size(); ++layer) {
    EXPECT_NE(stage_of_layer[layer], -1) << "layer " << layer << " in no stage";
  }
  std::vector<float> embed, head;
  for (int t = 0; t < tp(); ++t) {
    const LlamaShard& first_stage = shards[t];
    const LlamaShard& last_stage = shards[(pp() - 1) * tp() + t];
    embed.insert(embed.end(), first_stage.embed_tokens.begin(), first_stage.embed_tokens.end());
    head.insert(head.end(), last_stage.lm_head.begin(), last_stage.lm_head.end());
  }
  EXPECT_EQ(embed, full.embed_tokens);
  EXPECT_EQ(head, full.lm_head_matrix());
  EXPECT_EQ(static_cast<int64_t>(head.size()), full.config.vocab_size * hidden);
}

INSTANTIATE_TEST_SUITE_P(Layouts, LlamaShardTest,
                         ::testing::Combine(::testing::ValuesIn(kFlavours),
                                            ::testing::Values(1, 2, 4), ::testing::Values(1, 2)),
                         [](const ::testing::TestParamInfo<std::tuple<Flavour, int, int>>& info) {
                           return std::string(std::get<0>(info.param).name) + "_tp" +
                                  std::to_string(std::get<1>(info.param)) + "_pp" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(LoadLlamaShardTest, TrivialPlanLoadsWhatLoadLlamaWeightsLoads) {
  const Model model("trivial", ShardableTiny(false), CheckpointFormat::kNvfp4, Fp4Format::kNvfp4);
  auto shard = LoadLlamaShard(model.dir.path(), Plan(model.full.config, 1, 1, 0, 16), {});
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_EQ(shard->embed_tokens, model.full.embed_tokens);
  EXPECT_EQ(shard->lm_head, model.full.lm_head_matrix());
  EXPECT_EQ(shard->final_norm, model.full.final_norm);
  ASSERT_EQ(shard->layers.size(), model.full.layers.size());
  for (size_t i = 0; i < shard->layers.size(); ++i) {
    for (size_t slot = 0; slot < model::kLlamaLinearModules.size(); ++slot) {
      ExpectSameMatrix(
          shard->layers[i].linears[slot], model.full.layers[i].linears[slot],
          model::LayerModuleName(static_cast<int64_t>(i), model::kLlamaLinearModules[slot]));
    }
  }
}

TEST(LoadLlamaShardTest, KvHeadsReplicatedAcrossTpRanks) {
  // 2 kv heads over tp 4: ranks 0 and 1 hold kv head 0, ranks 2 and 3 kv head 1.
  const Model model("kv", ShardableTiny(false), CheckpointFormat::kNvfp4, Fp4Format::kNvfp4);
  std::vector<LlamaShard> shards;
  for (int rank = 0; rank < 4; ++rank) {
    auto shard = LoadLlamaShard(model.dir.path(), Plan(model.full.config, 4, 1, rank, 16), {});
    ASSERT_TRUE(shard.ok()) << shard.status();
    shards.push_back(*std::move(shard));
  }
  for (const size_t slot : {kK, kV}) {
    EXPECT_EQ(shards[0].layers[0].linears[slot].packed, shards[1].layers[0].linears[slot].packed);
    EXPECT_EQ(shards[2].layers[0].linears[slot].packed, shards[3].layers[0].linears[slot].packed);
    EXPECT_NE(shards[0].layers[0].linears[slot].packed, shards[2].layers[0].linears[slot].packed);
    ExpectSameMatrix(shards[3].layers[0].linears[slot],
                     SliceFp4Rows(model.full.layers[0].linears[slot], 32, 32), "kv head 1");
  }
}

TEST(LlamaShardErrorsTest, UnshardableConfigIsInvalidArgument) {
  // The tiny preset's 352 FFN columns leave 88 per rank at tp 4: not whole NVFP4 blocks.
  auto tiny = model::PresetModelConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  auto world = WorldConfig::Create(4, 1, 0);
  ASSERT_TRUE(world.ok());
  auto plan = PlanShard(*tiny, *world, {}, 16);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("down_proj local input width 88"));
}

TEST(LlamaShardErrorsTest, PlanOutsideTheModelIsInvalidArgument) {
  const model::ModelConfig config = ShardableTiny(false);
  const ModelDir dir("outside", config, CheckpointFormat::kNvfp4);
  ShardPlan plan = Plan(config, 1, 1, 0, 16);
  plan.layers.end = 3;
  auto shard = LoadLlamaShard(dir.path(), plan, {});
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(), HasSubstr("layers [0, 3)"));
  EXPECT_THAT(shard.status().message(), HasSubstr("config.json"));

  plan = Plan(config, 2, 1, 1, 16);
  plan.vocab_begin = 400;
  shard = LoadLlamaShard(dir.path(), plan, {});
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(), HasSubstr("vocabulary rows [400, 656)"));
}

TEST(LlamaShardErrorsTest, PlanForNvfp4BlocksLoadedAsMxfp4IsInvalidArgument) {
  // tiny at tp 2: 176 FFN columns per rank, whole NVFP4 blocks but not whole MXFP4 blocks.
  auto tiny = model::PresetModelConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  const ModelDir dir("misaligned", *tiny, CheckpointFormat::kBf16);
  model::LoadOptions options;
  options.quantize_format = Fp4Format::kMxfp4;
  auto shard = LoadLlamaShard(dir.path(), Plan(*tiny, 2, 1, 1, 16), options);
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(), HasSubstr("mlp.down_proj.weight"));
  EXPECT_THAT(shard.status().message(), HasSubstr("block boundaries"));
}

TEST(LlamaShardErrorsTest, TensorShapeMismatchNamesFileAndTensor) {
  model::ModelConfig config = ShardableTiny(false);
  const ModelDir dir("mismatch", config, CheckpointFormat::kNvfp4);
  config.intermediate_size = 416;  // on disk: 384
  OverwriteConfig(dir.path(), config);
  auto shard = LoadLlamaShard(dir.path(), Plan(config, 2, 1, 0, 16), {});
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shard.status().message(), HasSubstr("model.layers.0.mlp.gate_proj.weight"));
  EXPECT_THAT(shard.status().message(), HasSubstr("model.safetensors"));
}

TEST(LlamaShardErrorsTest, LayersOutsideTheStageAreNeverRead) {
  // config.json claims 4 layers; the checkpoint has 2. Stage 0 of pp 2 (layers 0, 1) loads;
  // stage 1 (layers 2, 3) finds its tensors missing.
  model::ModelConfig config = ShardableTiny(false);
  const ModelDir dir("extra_layers", config, CheckpointFormat::kNvfp4);
  config.num_hidden_layers = 4;
  OverwriteConfig(dir.path(), config);
  auto first = LoadLlamaShard(dir.path(), Plan(config, 1, 2, 0, 16), {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->layers.size(), 2u);
  auto second = LoadLlamaShard(dir.path(), Plan(config, 1, 2, 1, 16), {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(second.status().message(), HasSubstr("model.layers.2."));
}

}  // namespace
}  // namespace rackserve::parallel
