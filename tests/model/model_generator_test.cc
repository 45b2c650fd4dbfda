#include "runtime/model/model_generator.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/llama_weights.h"
#include "runtime/model/tokenizer.h"

namespace rackserve::model {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Write(const std::string& name, uint64_t seed, CheckpointFormat format, bool tokenizer,
                  base::ThreadPool* pool = nullptr) {
  const std::string dir = ::testing::TempDir() + "/rackserve_generator_test_" + name;
  fs::remove_all(dir);
  RandomModelOptions options;
  options.config = *PresetModelConfig("tiny");
  options.seed = seed;
  options.format = format;
  options.with_tokenizer = tokenizer;
  options.pool = pool;
  const absl::Status s = WriteRandomModel(dir, options);
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

TEST(ModelGeneratorTest, SameSeedSameBytesOtherSeedOtherBytes) {
  base::ThreadPool pool(3);
  const std::string a = Write("a", 1, CheckpointFormat::kNvfp4, false);
  const std::string b = Write("b", 1, CheckpointFormat::kNvfp4, false, &pool);  // parallel
  const std::string c = Write("c", 2, CheckpointFormat::kNvfp4, false);
  EXPECT_EQ(ReadAll(a + "/model.safetensors"), ReadAll(b + "/model.safetensors"));
  EXPECT_NE(ReadAll(a + "/model.safetensors"), ReadAll(c + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(a + "/hf_quant_config.json"));
}

TEST(ModelGeneratorTest, Bf16ModelLoadsAndHasNoQuantConfig) {
  const std::string dir = Write("bf16", 3, CheckpointFormat::kBf16, false);
  EXPECT_FALSE(fs::exists(dir + "/hf_quant_config.json"));
  auto weights = LoadLlamaWeights(dir, {});
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->layers.size(), 2u);
}

TEST(ModelGeneratorTest, WritesAWorkingTokenizer) {
  const std::string dir = Write("tok", 4, CheckpointFormat::kNvfp4, true);
  auto tokenizer = Tokenizer::Load(dir + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_LE((*tokenizer)->vocab_size(), 512);
  auto ids = (*tokenizer)->Encode("the quick brown fox", true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 1);
}

TEST(ModelGeneratorTest, PresetsAndErrors) {
  for (const std::string& name : PresetModelNames()) {
    auto c = PresetModelConfig(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_TRUE(c->Validate().ok()) << name;
  }
  EXPECT_EQ(PresetModelConfig("llama2-70b")->num_key_value_heads, 8);
  const absl::Status s = PresetModelConfig("gpt5").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("gpt5"));
  EXPECT_EQ(ParseCheckpointFormat("fp8").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rackserve::model
