#include "runtime/model/model_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rackserve::model {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// meta-llama/Llama-2-7b-hf config.json.
constexpr std::string_view kLlama2_7b = R"({
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

// meta-llama/Llama-3.1-8B config.json.
constexpr std::string_view kLlama31_8b = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// The smallest config the parser accepts: the required fields only.
json MinimalConfig() {
  return json{{"vocab_size", 1000},       {"hidden_size", 256},
              {"intermediate_size", 688}, {"num_hidden_layers", 2},
              {"num_attention_heads", 8}, {"max_position_embeddings", 512},
              {"rms_norm_eps", 1e-6}};
}

absl::StatusOr<ModelConfig> Parse(const json& j) {
  return ModelConfig::FromJson(j.dump(), "t.json");
}

// Expects INVALID_ARGUMENT naming the source and every one of `culprits`.
void ExpectInvalid(const absl::StatusOr<ModelConfig>& c,
                   std::initializer_list<std::string> culprits) {
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("t.json"));
  for (const std::string& culprit : culprits) {
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(culprit));
  }
}

TEST(ModelConfigTest, ParsesLlama2_7b) {
  absl::StatusOr<ModelConfig> c = ModelConfig::FromJson(kLlama2_7b);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 11008);
  EXPECT_EQ(c->num_hidden_layers, 32);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c->torch_dtype, "float16");
  EXPECT_EQ(c->q_size(), 4096);
  EXPECT_EQ(c->kv_size(), 4096);
}

TEST(ModelConfigTest, ParsesLlama31_8b) {
  absl::StatusOr<ModelConfig> c = ModelConfig::FromJson(kLlama31_8b);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->q_size(), 4096);
  EXPECT_EQ(c->kv_size(), 1024);
}

TEST(ModelConfigTest, RoundTripsThroughJson) {
  for (std::string_view text : {kLlama2_7b, kLlama31_8b}) {
    absl::StatusOr<ModelConfig> c = ModelConfig::FromJson(text);
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string written = c->ToJson();
    absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(written, "written.json");
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << written;
    EXPECT_EQ(*back, *c) << written;
  }
}

TEST(ModelConfigTest, WritesHuggingFaceFields) {
  absl::StatusOr<ModelConfig> c = ModelConfig::FromJson(kLlama31_8b);
  ASSERT_TRUE(c.ok()) << c.status();
  const json j = json::parse(c->ToJson());
  EXPECT_EQ(j["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["eos_token_id"], json::array({128001, 128008, 128009}));
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(j["rope_scaling"]["original_max_position_embeddings"], 8192);
  EXPECT_EQ(j["rope_theta"], 500000.0);

  absl::StatusOr<ModelConfig> l2 = ModelConfig::FromJson(kLlama2_7b);
  ASSERT_TRUE(l2.ok()) << l2.status();
  const json j2 = json::parse(l2->ToJson());
  EXPECT_EQ(j2["eos_token_id"], 2);
  EXPECT_TRUE(j2["rope_scaling"].is_null());
}

TEST(ModelConfigTest, RoundTripsEmptyEosAndTiedEmbeddings) {
  json j = MinimalConfig();
  j["eos_token_id"] = nullptr;
  j["tie_word_embeddings"] = true;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_TRUE(c->tie_word_embeddings);
  absl::StatusOr<ModelConfig> back = ModelConfig::FromJson(c->ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *c);
}

TEST(ModelConfigTest, AppliesHuggingFaceDefaults) {
  absl::StatusOr<ModelConfig> c = Parse(MinimalConfig());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->num_key_value_heads, 8);  // = num_attention_heads
  EXPECT_EQ(c->head_dim, 32);            // = hidden_size / num_attention_heads
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
}

TEST(ModelConfigTest, NullFieldsTakeTheirDefaults) {
  json j = MinimalConfig();
  j["num_key_value_heads"] = nullptr;
  j["head_dim"] = nullptr;
  j["rope_theta"] = nullptr;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->rope_theta, 10000.0);
}

TEST(ModelConfigTest, ExplicitHeadDimNeedNotEqualHiddenOverHeads) {
  json j = MinimalConfig();
  j["head_dim"] = 64;
  j["num_key_value_heads"] = 2;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->q_size(), 512);
  EXPECT_EQ(c->kv_size(), 128);
}

TEST(ModelConfigTest, RopeTypeDefaultAndOldTypeKey) {
  json j = MinimalConfig();
  j["rope_scaling"] = {{"rope_type", "default"}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);

  j["rope_scaling"] = {{"type", "llama3"},
                       {"factor", 32},
                       {"low_freq_factor", 1},
                       {"high_freq_factor", 4},
                       {"original_max_position_embeddings", 8192}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 32.0);
}

TEST(ModelConfigTest, EachMissingRequiredFieldIsNamed) {
  for (const std::string field :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "max_position_embeddings", "rms_norm_eps"}) {
    SCOPED_TRACE(field);
    json j = MinimalConfig();
    j.erase(field);
    ExpectInvalid(Parse(j), {"\"" + field + "\"", "missing"});
    j[field] = nullptr;  // null is "absent" too
    ExpectInvalid(Parse(j), {"\"" + field + "\"", "missing"});
  }
}

TEST(ModelConfigTest, EachMissingLlama3FieldIsNamed) {
  for (const std::string field :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    SCOPED_TRACE(field);
    json j = json::parse(kLlama31_8b);
    j["rope_scaling"].erase(field);
    ExpectInvalid(Parse(j), {"rope_scaling." + field});
  }
}

TEST(ModelConfigTest, WrongJsonTypesAreNamed) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"hidden_size", "4096"},    {"hidden_size", 4096.5},
      {"vocab_size", -1.0},       {"rms_norm_eps", "1e-5"},
      {"rope_theta", true},       {"tie_word_embeddings", 1},
      {"bos_token_id", "1"},      {"eos_token_id", "2"},
      {"torch_dtype", 16},        {"architectures", "LlamaForCausalLM"},
      {"rope_scaling", "llama3"}, {"num_key_value_heads", json::array({8})},
  };
  for (const auto& [field, value] : cases) {
    SCOPED_TRACE(field + " = " + value.dump());
    json j = MinimalConfig();
    j[field] = value;
    ExpectInvalid(Parse(j), {"\"" + field + "\""});
  }
}

TEST(ModelConfigTest, WrongTypesInsideListsAndObjectsAreNamed) {
  json j = json::parse(kLlama31_8b);
  j["eos_token_id"] = json::array({128001, "x"});
  ExpectInvalid(Parse(j), {"eos_token_id[1]"});

  j = json::parse(kLlama31_8b);
  j["rope_scaling"]["factor"] = "8";
  ExpectInvalid(Parse(j), {"rope_scaling.factor", "expected a number"});
}

TEST(ModelConfigTest, RejectsTextThatIsNotAJsonObject) {
  for (std::string_view text : {"", "{", "[1, 2]", "42", "{\"vocab_size\": 1,}"}) {
    SCOPED_TRACE(text);
    ExpectInvalid(ModelConfig::FromJson(text, "t.json"), {});
  }
}

TEST(ModelConfigTest, RejectsUnknownArchitectureAndModelType) {
  json j = MinimalConfig();
  j["architectures"] = json::array({"MistralForCausalLM"});
  ExpectInvalid(Parse(j), {"\"architectures\"", "MistralForCausalLM"});

  j = MinimalConfig();
  j["architectures"] = json::array();
  ExpectInvalid(Parse(j), {"\"architectures\""});

  j = MinimalConfig();
  j["model_type"] = "gpt2";
  ExpectInvalid(Parse(j), {"\"model_type\"", "gpt2"});
}

TEST(ModelConfigTest, RejectsUnsupportedRopeScalingType) {
  json j = json::parse(kLlama31_8b);
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  ExpectInvalid(Parse(j), {"rope_scaling.rope_type", "linear"});

  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  ExpectInvalid(Parse(j), {"rope_scaling.type", "dynamic"});

  j["rope_scaling"] = {{"factor", 2.0}};
  ExpectInvalid(Parse(j), {"rope_scaling.rope_type", "missing"});
}

TEST(ModelConfigTest, RejectsUnsupportedFeatures) {
  json j = MinimalConfig();
  j["hidden_act"] = "gelu";
  ExpectInvalid(Parse(j), {"\"hidden_act\"", "gelu"});
  j = MinimalConfig();
  j["attention_bias"] = true;
  ExpectInvalid(Parse(j), {"\"attention_bias\""});
  j = MinimalConfig();
  j["mlp_bias"] = true;
  ExpectInvalid(Parse(j), {"\"mlp_bias\""});
  j = MinimalConfig();
  j["torch_dtype"] = "int8";
  ExpectInvalid(Parse(j), {"\"torch_dtype\"", "int8"});
}

TEST(ModelConfigTest, RejectsHeadsThatDoNotDivide) {
  json j = MinimalConfig();
  j["num_attention_heads"] = 6;  // 256 % 6 != 0
  ExpectInvalid(Parse(j), {"\"num_attention_heads\"", "hidden_size"});

  j = MinimalConfig();
  j["num_key_value_heads"] = 3;  // 8 % 3 != 0
  ExpectInvalid(Parse(j), {"\"num_key_value_heads\"", "num_attention_heads"});

  j = MinimalConfig();
  j["num_key_value_heads"] = 16;  // more KV heads than query heads
  ExpectInvalid(Parse(j), {"\"num_key_value_heads\""});
}

TEST(ModelConfigTest, RejectsBadValues) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"vocab_size", 0},
      {"hidden_size", -256},
      {"intermediate_size", 0},
      {"num_hidden_layers", 0},
      {"num_hidden_layers", 100000},
      {"max_position_embeddings", 0},
      {"head_dim", 31},
      {"head_dim", 0},
      {"rms_norm_eps", 0.0},
      {"rms_norm_eps", -1e-5},
      {"rope_theta", 0.0},
      {"bos_token_id", 1000},  // vocab_size is 1000
      {"bos_token_id", -1},
      {"vocab_size", int64_t{1} << 40},
  };
  for (const auto& [field, value] : cases) {
    SCOPED_TRACE(field + " = " + value.dump());
    json j = MinimalConfig();
    j[field] = value;
    ExpectInvalid(Parse(j), {"\"" + field + "\""});
  }
  json j = MinimalConfig();
  j["eos_token_id"] = json::array({2, 1000});
  ExpectInvalid(Parse(j), {"eos_token_id[1]", "1000"});

  j = json::parse(kLlama31_8b);
  j["rope_scaling"]["high_freq_factor"] = 1.0;  // must exceed low_freq_factor
  ExpectInvalid(Parse(j), {"rope_scaling.high_freq_factor"});
  j = json::parse(kLlama31_8b);
  j["rope_scaling"]["factor"] = 0.5;
  ExpectInvalid(Parse(j), {"rope_scaling.factor"});
}

TEST(ModelConfigTest, ValidateNamesTheFieldOfConfigsBuiltInCode) {
  ModelConfig c;
  absl::Status s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("vocab_size"));

  absl::StatusOr<ModelConfig> parsed = ModelConfig::FromJson(kLlama2_7b);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  c = *parsed;
  EXPECT_TRUE(c.Validate().ok());
  c.architecture = "GPT2LMHeadModel";
  s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("GPT2LMHeadModel"));
}

class ModelConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("model_config_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, std::string_view text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ModelConfigFileTest, ReadsAFile) {
  const std::string path = Write("config.json", kLlama31_8b);
  absl::StatusOr<ModelConfig> c = ModelConfig::FromFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 128256);
}

TEST_F(ModelConfigFileTest, MissingFileIsNotFound) {
  const std::string path = (dir_ / "absent.json").string();
  absl::StatusOr<ModelConfig> c = ModelConfig::FromFile(path);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(path));
}

TEST_F(ModelConfigFileTest, ErrorsNameTheFile) {
  const std::string path = Write("bad.json", R"({"vocab_size": 32000})");
  absl::StatusOr<ModelConfig> c = ModelConfig::FromFile(path);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("hidden_size"));

  c = ModelConfig::FromFile(dir_.string());  // a directory
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(dir_.string()));
}

}  // namespace
}  // namespace rackserve::model
