#include "runtime/model/quant_config.h"

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

// As written by NVIDIA ModelOpt for an NVFP4 Llama checkpoint.
constexpr std::string_view kModelOptNvfp4 = R"({
    "producer": {
        "name": "modelopt",
        "version": "0.19.0"
    },
    "quantization": {
        "quant_algo": "NVFP4",
        "kv_cache_quant_algo": "FP8",
        "group_size": 16,
        "exclude_modules": [
            "lm_head"
        ]
    }
})";

void ExpectInvalid(const absl::StatusOr<QuantConfig>& q,
                   std::initializer_list<std::string> culprits) {
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << q.status();
  EXPECT_THAT(std::string(q.status().message()), HasSubstr("q.json"));
  for (const std::string& culprit : culprits) {
    EXPECT_THAT(std::string(q.status().message()), HasSubstr(culprit));
  }
}

TEST(QuantConfigTest, ParsesModelOptNvfp4) {
  absl::StatusOr<QuantConfig> q = QuantConfig::FromJson(kModelOptNvfp4, "q.json");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->quant_algo, "NVFP4");
  EXPECT_EQ(q->group_size, 16);
  EXPECT_EQ(q->exclude_modules, std::vector<std::string>{"lm_head"});
}

TEST(QuantConfigTest, RoundTripsThroughJson) {
  QuantConfig q;
  q.quant_algo = "NVFP4";
  q.exclude_modules = {"lm_head", "model.layers.0.*"};
  const std::string written = q.ToJson();
  const json j = json::parse(written);
  EXPECT_EQ(j["producer"]["name"], "rackserve");
  EXPECT_TRUE(j["producer"]["version"].is_string());
  EXPECT_EQ(j["quantization"]["quant_algo"], "NVFP4");
  EXPECT_TRUE(j["quantization"]["kv_cache_quant_algo"].is_null());
  EXPECT_EQ(j["quantization"]["group_size"], 16);
  absl::StatusOr<QuantConfig> back = QuantConfig::FromJson(written, "q.json");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << written;
  EXPECT_EQ(*back, q);
}

TEST(QuantConfigTest, NullAlgoMeansNotQuantized) {
  absl::StatusOr<QuantConfig> q =
      QuantConfig::FromJson(R"({"quantization": {"quant_algo": null}})", "q.json");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->quant_algo, "");
  EXPECT_EQ(q->group_size, 16);
  EXPECT_TRUE(q->exclude_modules.empty());

  const json j = json::parse(q->ToJson());
  EXPECT_TRUE(j["quantization"]["quant_algo"].is_null());
  absl::StatusOr<QuantConfig> back = QuantConfig::FromJson(q->ToJson(), "q.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *q);
}

TEST(QuantConfigTest, OtherAlgorithmsAreParsedForTheLoaderToReject) {
  absl::StatusOr<QuantConfig> q = QuantConfig::FromJson(
      R"({"quantization": {"quant_algo": "W4A16_AWQ", "group_size": 128}})", "q.json");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->quant_algo, "W4A16_AWQ");
  EXPECT_EQ(q->group_size, 128);
}

TEST(QuantConfigTest, ErrorsNameTheField) {
  ExpectInvalid(QuantConfig::FromJson("not json", "q.json"), {"JSON"});
  ExpectInvalid(QuantConfig::FromJson("[]", "q.json"), {"object"});
  ExpectInvalid(QuantConfig::FromJson(R"({"producer": {}})", "q.json"),
                {"\"quantization\"", "missing"});
  ExpectInvalid(QuantConfig::FromJson(R"({"quantization": "NVFP4"})", "q.json"),
                {"\"quantization\"", "object"});
  ExpectInvalid(QuantConfig::FromJson(R"({"quantization": {"group_size": 16}})", "q.json"),
                {"quantization.quant_algo", "missing"});
  ExpectInvalid(QuantConfig::FromJson(R"({"quantization": {"quant_algo": 4}})", "q.json"),
                {"quantization.quant_algo", "string"});
  ExpectInvalid(QuantConfig::FromJson(
                    R"({"quantization": {"quant_algo": "NVFP4", "group_size": "16"}})", "q.json"),
                {"quantization.group_size", "integer"});
  ExpectInvalid(QuantConfig::FromJson(
                    R"({"quantization": {"quant_algo": "NVFP4", "group_size": 0}})", "q.json"),
                {"quantization.group_size", "positive"});
  ExpectInvalid(
      QuantConfig::FromJson(
          R"({"quantization": {"quant_algo": "NVFP4", "exclude_modules": "lm_head"}})", "q.json"),
      {"quantization.exclude_modules"});
  ExpectInvalid(
      QuantConfig::FromJson(
          R"({"quantization": {"quant_algo": "NVFP4", "exclude_modules": ["lm_head", 3]}})",
          "q.json"),
      {"quantization.exclude_modules[1]"});
}

TEST(QuantConfigTest, ExcludesByNameAndGlob) {
  QuantConfig q;
  q.exclude_modules = {"lm_head", "model.layers.*.mlp.down_proj", "model.layers.1?.self_attn*"};
  EXPECT_TRUE(q.IsExcluded("lm_head"));
  EXPECT_FALSE(q.IsExcluded("lm_head2"));
  EXPECT_FALSE(q.IsExcluded("model.lm_head"));
  EXPECT_TRUE(q.IsExcluded("model.layers.0.mlp.down_proj"));
  EXPECT_TRUE(q.IsExcluded("model.layers.31.mlp.down_proj"));
  EXPECT_FALSE(q.IsExcluded("model.layers.0.mlp.up_proj"));
  EXPECT_TRUE(q.IsExcluded("model.layers.12.self_attn.q_proj"));
  EXPECT_FALSE(q.IsExcluded("model.layers.1.self_attn.q_proj"));
  EXPECT_FALSE(QuantConfig().IsExcluded("lm_head"));
}

class QuantConfigDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::path(::testing::TempDir()) /
            ("quant_config_test_" + std::to_string(getpid())))
               .string();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
};

TEST_F(QuantConfigDirTest, AbsentFileIsNullopt) {
  absl::StatusOr<std::optional<QuantConfig>> q = QuantConfig::FromModelDir(dir_);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_FALSE(q->has_value());
}

TEST_F(QuantConfigDirTest, ReadsThePresentFile) {
  std::ofstream(dir_ + "/hf_quant_config.json") << kModelOptNvfp4;
  absl::StatusOr<std::optional<QuantConfig>> q = QuantConfig::FromModelDir(dir_);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_TRUE(q->has_value());
  EXPECT_EQ((*q)->quant_algo, "NVFP4");
}

TEST_F(QuantConfigDirTest, BadFileIsNamed) {
  std::ofstream(dir_ + "/hf_quant_config.json") << R"({"quantization": {"quant_algo": 1}})";
  absl::StatusOr<std::optional<QuantConfig>> q = QuantConfig::FromModelDir(dir_);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(q.status().message()), HasSubstr(dir_ + "/hf_quant_config.json"));
}

TEST_F(QuantConfigDirTest, MissingDirectoryIsNotFound) {
  const std::string missing = dir_ + "/absent";
  absl::StatusOr<std::optional<QuantConfig>> q = QuantConfig::FromModelDir(missing);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(q.status().message()), HasSubstr(missing));
}

}  // namespace
}  // namespace rackserve::model
