#include "runtime/model/checkpoint_quantizer.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/llama_weights.h"
#include "runtime/model/model_generator.h"

namespace rackserve::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/rackserve_quantizer_test_" + name;
  fs::remove_all(dir);
  return dir;
}

std::string MakeModel(const std::string& name, CheckpointFormat format) {
  const std::string dir = Dir(name);
  RandomModelOptions options;
  options.config = *PresetModelConfig("tiny");
  options.format = format;
  options.with_tokenizer = false;
  EXPECT_TRUE(WriteRandomModel(dir, options).ok());
  return dir;
}

TEST(CheckpointQuantizerTest, Bf16ToNvfp4MatchesQuantizingAtLoad) {
  const std::string in = MakeModel("bf16_in", CheckpointFormat::kBf16);
  const std::string out = Dir("nvfp4_out");
  int64_t last_done = 0, last_total = 0;
  QuantizeOptions options;
  options.max_shard_bytes = 200 << 10;  // shards the output
  options.progress = [&](int64_t done, int64_t total) {
    EXPECT_GT(done, last_done);
    last_done = done;
    last_total = total;
  };
  auto report = QuantizeCheckpoint(in, out, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->tensors_quantized, 2 * 7);
  EXPECT_EQ(report->tensors_copied, 1 + 2 * 2 + 1 + 1);  // embed, norms, final norm, lm_head
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(report->mean_error, 0.02);
  EXPECT_LT(report->max_error, 0.15);
  EXPECT_LT(report->bytes_out, report->bytes_in);
  EXPECT_TRUE(fs::exists(out + "/hf_quant_config.json"));
  EXPECT_TRUE(fs::exists(out + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(out + "/config.json"));

  auto at_load = LoadLlamaWeights(in, {});
  auto prequantized = LoadLlamaWeights(out, {});
  ASSERT_TRUE(at_load.ok()) << at_load.status();
  ASSERT_TRUE(prequantized.ok()) << prequantized.status();
  for (size_t l = 0; l < at_load->layers.size(); ++l) {
    for (size_t i = 0; i < kLlamaLinearModules.size(); ++i) {
      const auto& a = at_load->layers[l].linears[i];
      const auto& b = prequantized->layers[l].linears[i];
      EXPECT_EQ(a.packed, b.packed) << l << " " << kLlamaLinearModules[i];
      EXPECT_EQ(a.scales, b.scales) << l << " " << kLlamaLinearModules[i];
      EXPECT_EQ(a.tensor_scale, b.tensor_scale) << l << " " << kLlamaLinearModules[i];
    }
  }
  EXPECT_EQ(at_load->embed_tokens, prequantized->embed_tokens);
  EXPECT_EQ(at_load->lm_head, prequantized->lm_head);
}

TEST(CheckpointQuantizerTest, AlreadyNvfp4IsAnError) {
  const std::string in = MakeModel("nvfp4_in", CheckpointFormat::kNvfp4);
  const absl::Status s = QuantizeCheckpoint(in, Dir("again"), {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("already NVFP4"));
}

TEST(CheckpointQuantizerTest, OutputIsInputIsAnError) {
  const std::string in = MakeModel("same", CheckpointFormat::kBf16);
  EXPECT_EQ(QuantizeCheckpoint(in, in, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckpointQuantizerTest, MissingInputIsNotFound) {
  EXPECT_EQ(QuantizeCheckpoint(Dir("nothing"), Dir("out2"), {}).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rackserve::model
