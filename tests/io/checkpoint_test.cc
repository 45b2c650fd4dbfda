// Tests Checkpoint: single-file, sharded (index) and index-less directories written by
// SafetensorsWriter, float reads and row slices, and the errors for missing, mismatched and
// corrupt checkpoints (exact codes; messages name the directory, file and tensor).
#include "runtime/io/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/io/safetensors_writer.h"
#include "runtime/numerics/minifloat.h"
#include "tests/io/test_files.h"

namespace rackserve::io {
namespace {

using ::rackserve::io::testing::ReadBytes;
using ::rackserve::io::testing::TempDir;
using ::rackserve::io::testing::WriteBytes;
using ::testing::HasSubstr;

std::vector<float> RandomFloats(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> RoundedThrough(DType dtype, const std::vector<float>& values) {
  std::vector<float> out;
  for (const float v : values) {
    if (dtype == DType::kF16) {
      out.push_back(numerics::Fp16ToFloat(numerics::FloatToFp16(v)));
    } else if (dtype == DType::kBF16) {
      out.push_back(numerics::Bf16ToFloat(numerics::FloatToBf16(v)));
    } else {
      out.push_back(v);
    }
  }
  return out;
}

// A small model: three float matrices of each float dtype plus a few other tensors.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(std::random_device{}());
    f32_ = RandomFloats(4 * 6, rng);
    f16_ = RandomFloats(5 * 3, rng);
    bf16_ = RandomFloats(8 * 2, rng);
    writer_.SetMetadata("format", "pt");
    ASSERT_TRUE(writer_.AddF32("model.embed.weight", {4, 6}, f32_).ok());
    ASSERT_TRUE(writer_.AddF16("model.layers.0.mlp.weight", {5, 3}, f16_).ok());
    ASSERT_TRUE(writer_.AddBf16("model.layers.1.attn.weight", {8, 2}, bf16_).ok());
    ASSERT_TRUE(writer_
                    .Add("model.layers.1.attn.weight_scale", DType::kF8E4M3, {8, 1},
                         std::vector<uint8_t>(8, 0x38))
                    .ok());
    ASSERT_TRUE(writer_.Add("model.norm.ids", DType::kI32, {3}, std::vector<uint8_t>(12, 1)).ok());
  }

  absl::StatusOr<std::unique_ptr<Checkpoint>> WriteAndOpen(int64_t max_shard_bytes) {
    const absl::Status written = writer_.WriteCheckpoint(dir_.path(), max_shard_bytes);
    if (!written.ok()) return written;
    return Checkpoint::Open(dir_.path());
  }

  nlohmann::json ReadIndex() const {
    return nlohmann::json::parse(ReadBytes(dir_.File(kIndexFileName)), nullptr, false);
  }

  void ExpectAllTensors(const Checkpoint& ckpt) {
    EXPECT_EQ(ckpt.TensorNames(),
              (std::vector<std::string>{"model.embed.weight", "model.layers.0.mlp.weight",
                                        "model.layers.1.attn.weight",
                                        "model.layers.1.attn.weight_scale", "model.norm.ids"}));
    const std::vector<int64_t> s0 = {4, 6}, s1 = {5, 3}, s2 = {8, 2};
    EXPECT_EQ(ckpt.ReadFloat("model.embed.weight", s0).value(), f32_);
    EXPECT_EQ(ckpt.ReadFloat("model.layers.0.mlp.weight", s1).value(),
              RoundedThrough(DType::kF16, f16_));
    EXPECT_EQ(ckpt.ReadFloat("model.layers.1.attn.weight", s2).value(),
              RoundedThrough(DType::kBF16, bf16_));
    const std::vector<int64_t> scale_shape = {8, 1};
    const absl::StatusOr<const TensorView*> scale =
        ckpt.GetChecked("model.layers.1.attn.weight_scale", DType::kF8E4M3, scale_shape);
    ASSERT_TRUE(scale.ok()) << scale.status();
    EXPECT_EQ(std::vector<uint8_t>((*scale)->data.begin(), (*scale)->data.end()),
              std::vector<uint8_t>(8, 0x38));
  }

  TempDir dir_;
  SafetensorsWriter writer_;
  std::vector<float> f32_, f16_, bf16_;
};

TEST_F(CheckpointTest, SingleFileRoundTrip) {
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(1 << 20);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE(std::filesystem::exists(dir_.File(kSingleFileName)));
  EXPECT_FALSE(std::filesystem::exists(dir_.File(kIndexFileName)));
  EXPECT_EQ((*ckpt)->dir(), dir_.path());
  ExpectAllTensors(**ckpt);
  EXPECT_TRUE((*ckpt)->Has("model.norm.ids"));
  EXPECT_FALSE((*ckpt)->Has("model.norm.weight"));
  EXPECT_EQ((*ckpt)->FileOf("model.norm.ids"), dir_.File(kSingleFileName));
  EXPECT_EQ((*ckpt)->FileOf("model.norm.weight"), "");
}

TEST_F(CheckpointTest, ShardedRoundTripWithHuggingFaceIndex) {
  // 40 bytes per shard: every float matrix exceeds it alone, so most tensors get a shard.
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(40);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_FALSE(std::filesystem::exists(dir_.File(kSingleFileName)));
  ExpectAllTensors(**ckpt);

  const nlohmann::json index = ReadIndex();
  ASSERT_TRUE(index.is_object());
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), writer_.total_bytes());
  const nlohmann::json& weight_map = index["weight_map"];
  ASSERT_EQ(weight_map.size(), 5u);
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map.items()) {
    shards.insert(shard.get<std::string>());
    EXPECT_EQ((*ckpt)->FileOf(tensor), dir_.File(shard.get<std::string>())) << tensor;
  }
  // Name order, greedy: 96 B (f32) | 30 B (f16) | 32 + 8 B (bf16, scale) | 12 B (ids).
  EXPECT_EQ(shards, (std::set<std::string>{
                        "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                        "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"}));
  EXPECT_EQ(weight_map["model.norm.ids"], "model-00004-of-00004.safetensors");
}

TEST_F(CheckpointTest, RewritingSwitchesLayoutCleanly) {
  ASSERT_TRUE(writer_.WriteCheckpoint(dir_.path(), 40).ok());
  ASSERT_TRUE(std::filesystem::exists(dir_.File(kIndexFileName)));
  ASSERT_TRUE(writer_.WriteCheckpoint(dir_.path(), 1 << 20).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.File(kIndexFileName)));
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->FileOf("model.embed.weight"), dir_.File(kSingleFileName));
}

TEST_F(CheckpointTest, DirectoryOfFilesWithoutIndexIsAccepted) {
  SafetensorsWriter a, b;
  ASSERT_TRUE(a.AddF32("a", {2}, std::vector<float>{1, 2}).ok());
  ASSERT_TRUE(b.AddF32("b", {1}, std::vector<float>{3}).ok());
  ASSERT_TRUE(a.WriteFile(dir_.File("part-a.safetensors")).ok());
  ASSERT_TRUE(b.WriteFile(dir_.File("part-b.safetensors")).ok());
  WriteBytes(dir_.File("config.json"), "{}");
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->TensorNames(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*ckpt)->FileOf("b"), dir_.File("part-b.safetensors"));
  const std::vector<int64_t> shape = {1};
  EXPECT_EQ((*ckpt)->ReadFloat("b", shape).value(), std::vector<float>{3});
}

TEST_F(CheckpointTest, ReadFloatRowsSlicesEveryFloatDtype) {
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(40);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  struct Case {
    const char* name;
    DType dtype;
    const std::vector<float>* values;
    int64_t cols;
  };
  for (const Case& c : {Case{"model.embed.weight", DType::kF32, &f32_, 6},
                        Case{"model.layers.0.mlp.weight", DType::kF16, &f16_, 3},
                        Case{"model.layers.1.attn.weight", DType::kBF16, &bf16_, 2}}) {
    SCOPED_TRACE(c.name);
    const std::vector<float> all = RoundedThrough(c.dtype, *c.values);
    const absl::StatusOr<std::vector<float>> rows = (*ckpt)->ReadFloatRows(c.name, 1, 3);
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(*rows, std::vector<float>(all.begin() + c.cols, all.begin() + 3 * c.cols));
    const absl::StatusOr<std::vector<float>> empty = (*ckpt)->ReadFloatRows(c.name, 2, 2);
    ASSERT_TRUE(empty.ok()) << empty.status();
    EXPECT_TRUE(empty->empty());
    const int64_t total_rows = static_cast<int64_t>(all.size()) / c.cols;
    EXPECT_EQ((*ckpt)->ReadFloatRows(c.name, 0, total_rows).value(), all);
  }
}

TEST_F(CheckpointTest, ReadFloatRowsRejectsBadRangesRanksAndDtypes) {
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(1 << 20);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  for (const auto& [begin, end] :
       std::vector<std::pair<int64_t, int64_t>>{{-1, 2}, {3, 2}, {0, 5}}) {
    const absl::StatusOr<std::vector<float>> rows =
        (*ckpt)->ReadFloatRows("model.embed.weight", begin, end);
    EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument) << begin << " " << end;
    EXPECT_THAT(rows.status().message(), HasSubstr("'model.embed.weight'"));
    EXPECT_THAT(rows.status().message(), HasSubstr("4 rows"));
  }
  const absl::StatusOr<std::vector<float>> ids = (*ckpt)->ReadFloatRows("model.norm.ids", 0, 1);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("'model.norm.ids'"));
  EXPECT_THAT(ids.status().message(), HasSubstr("I32 [3]"));
  const absl::StatusOr<std::vector<float>> missing = (*ckpt)->ReadFloatRows("nope", 0, 1);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointTest, ReadFloatRejectsOtherDtypesAndShapes) {
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(1 << 20);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::vector<int64_t> wrong = {6, 4};
  const absl::StatusOr<std::vector<float>> shape = (*ckpt)->ReadFloat("model.embed.weight", wrong);
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shape.status().message(), HasSubstr("'model.embed.weight'"));
  EXPECT_THAT(shape.status().message(), HasSubstr("[4, 6]"));
  EXPECT_THAT(shape.status().message(), HasSubstr("[6, 4]"));
  EXPECT_THAT(shape.status().message(), HasSubstr(dir_.File(kSingleFileName)));

  const std::vector<int64_t> scale_shape = {8, 1};
  const absl::StatusOr<std::vector<float>> fp8 =
      (*ckpt)->ReadFloat("model.layers.1.attn.weight_scale", scale_shape);
  EXPECT_EQ(fp8.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fp8.status().message(), HasSubstr("F8_E4M3"));
}

TEST_F(CheckpointTest, GetCheckedReportsWrongDtypeAndShape) {
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(40);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const std::vector<int64_t> shape = {8, 2};
  const std::string file = (*ckpt)->FileOf("model.layers.1.attn.weight");

  const absl::StatusOr<const TensorView*> ok =
      (*ckpt)->GetChecked("model.layers.1.attn.weight", DType::kBF16, shape);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->name, "model.layers.1.attn.weight");

  const absl::StatusOr<const TensorView*> dtype =
      (*ckpt)->GetChecked("model.layers.1.attn.weight", DType::kF32, shape);
  EXPECT_EQ(dtype.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dtype.status().message(), HasSubstr("'model.layers.1.attn.weight'"));
  EXPECT_THAT(dtype.status().message(), HasSubstr(file));
  EXPECT_THAT(dtype.status().message(), HasSubstr("is BF16 [8, 2], expected F32 [8, 2]"));

  const std::vector<int64_t> other = {2, 8, 1};
  const absl::StatusOr<const TensorView*> wrong_shape =
      (*ckpt)->GetChecked("model.layers.1.attn.weight", DType::kBF16, other);
  EXPECT_EQ(wrong_shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_shape.status().message(), HasSubstr("expected BF16 [2, 8, 1]"));
}

TEST_F(CheckpointTest, MissingTensorIsNotFoundNamingTensorAndDir) {
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = WriteAndOpen(1 << 20);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const absl::StatusOr<const TensorView*> view = (*ckpt)->Get("lm_head.weight");
  EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(view.status().message(), HasSubstr("'lm_head.weight'"));
  EXPECT_THAT(view.status().message(), HasSubstr(dir_.path()));
  const std::vector<int64_t> shape = {1};
  EXPECT_EQ((*ckpt)->GetChecked("lm_head.weight", DType::kF32, shape).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*ckpt)->ReadFloat("lm_head.weight", shape).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CheckpointOpenTest, MissingOrEmptyDirectoryIsNotFound) {
  TempDir dir;
  const std::string missing = dir.File("absent");
  const absl::StatusOr<std::unique_ptr<Checkpoint>> none = Checkpoint::Open(missing);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr(missing));

  WriteBytes(dir.File("config.json"), "{}");
  const absl::StatusOr<std::unique_ptr<Checkpoint>> empty = Checkpoint::Open(dir.path());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(empty.status().message(), HasSubstr(dir.path()));
}

TEST_F(CheckpointTest, MissingShardIsNotFoundNamingIt) {
  ASSERT_TRUE(writer_.WriteCheckpoint(dir_.path(), 40).ok());
  const std::string shard = dir_.File("model-00002-of-00004.safetensors");
  ASSERT_TRUE(std::filesystem::remove(shard));
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(shard));
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir_.File(kIndexFileName)));
}

TEST_F(CheckpointTest, CorruptShardIsDataLossNamingIt) {
  ASSERT_TRUE(writer_.WriteCheckpoint(dir_.path(), 40).ok());
  const std::string shard = dir_.File("model-00003-of-00004.safetensors");
  const std::string bytes = ReadBytes(shard);
  WriteBytes(shard, bytes.substr(0, bytes.size() - 4));  // truncated data region
  const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(shard));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("'model.layers.1.attn.weight_scale'"));
}

TEST_F(CheckpointTest, MalformedIndexIsDataLossNamingIndexFile) {
  ASSERT_TRUE(writer_.WriteCheckpoint(dir_.path(), 40).ok());
  const std::string index = dir_.File(kIndexFileName);
  for (const char* text : {R"({"weight_map": {"a": )", R"([1, 2])", R"({"metadata": {}})",
                           R"({"weight_map": ["a"]})", R"({"weight_map": {"a": 3}})",
                           R"({"weight_map": {"a": "../model-00001-of-00004.safetensors"}})"}) {
    SCOPED_TRACE(text);
    WriteBytes(index, text);
    const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_.path());
    EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(ckpt.status().message(), HasSubstr(index));
  }
}

TEST_F(CheckpointTest, TensorAbsentFromItsIndexedShardIsDataLoss) {
  ASSERT_TRUE(writer_.WriteCheckpoint(dir_.path(), 40).ok());
  nlohmann::json index = ReadIndex();
  // Point a tensor at a shard that does not hold it.
  index["weight_map"]["model.norm.ids"] = "model-00001-of-00004.safetensors";
  WriteBytes(dir_.File(kIndexFileName), index.dump());
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir_.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("'model.norm.ids'"));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("model-00001-of-00004.safetensors"));

  // List a tensor that no shard holds.
  index = ReadIndex();
  ASSERT_TRUE(index.is_object());
  index["weight_map"]["model.ghost"] = "model-00001-of-00004.safetensors";
  WriteBytes(dir_.File(kIndexFileName), index.dump());
  ckpt = Checkpoint::Open(dir_.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("'model.ghost'"));
}

TEST(CheckpointOpenTest, SameTensorInTwoShardsIsDataLoss) {
  TempDir dir;
  SafetensorsWriter one, two;
  ASSERT_TRUE(one.AddF32("shared", {1}, std::vector<float>{1}).ok());
  ASSERT_TRUE(two.AddF32("shared", {1}, std::vector<float>{2}).ok());
  ASSERT_TRUE(two.AddF32("other", {1}, std::vector<float>{3}).ok());
  ASSERT_TRUE(one.WriteFile(dir.File("s1.safetensors")).ok());
  ASSERT_TRUE(two.WriteFile(dir.File("s2.safetensors")).ok());

  // Without an index, and with one.
  for (const bool with_index : {false, true}) {
    SCOPED_TRACE(with_index);
    if (with_index) {
      WriteBytes(dir.File(kIndexFileName),
                 R"({"weight_map": {"shared": "s1.safetensors", "other": "s2.safetensors"}})");
    }
    const absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(dir.path());
    EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(ckpt.status().message(), HasSubstr("'shared'"));
    EXPECT_THAT(ckpt.status().message(), HasSubstr(dir.File("s1.safetensors")));
    EXPECT_THAT(ckpt.status().message(), HasSubstr(dir.File("s2.safetensors")));
  }
}

TEST(CheckpointOpenTest, WriteCheckpointRejectsNonPositiveShardSize) {
  TempDir dir;
  SafetensorsWriter writer;
  const absl::Status s = writer.WriteCheckpoint(dir.path(), 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("max_shard_bytes"));
}

}  // namespace
}  // namespace rackserve::io
