// Tests SafetensorsWriter: round trips of every dtype through SafetensorsFile, the on-disk
// layout (padded header, contiguous aligned data), metadata, float encodings, and the errors
// Add and WriteFile report.
#include "runtime/io/safetensors_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/io/safetensors_file.h"
#include "runtime/numerics/minifloat.h"
#include "tests/io/test_files.h"

namespace rackserve::io {
namespace {

using ::rackserve::io::testing::ReadBytes;
using ::rackserve::io::testing::TempDir;
using ::testing::HasSubstr;

constexpr DType kAllDTypes[] = {DType::kF64,    DType::kF32, DType::kF16, DType::kBF16,
                                DType::kF8E4M3, DType::kI64, DType::kI32, DType::kI16,
                                DType::kI8,     DType::kU8,  DType::kBool};

std::vector<uint8_t> RandomBytes(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> bytes(n);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> WriteAndOpen(const SafetensorsWriter& writer,
                                                              const std::string& path) {
  const absl::Status written = writer.WriteFile(path);
  if (!written.ok()) return written;
  return SafetensorsFile::Open(path);
}

TEST(SafetensorsWriterTest, RoundTripsEveryDtypeWithAlignedContiguousData) {
  TempDir dir;
  std::mt19937 rng(std::random_device{}());
  SafetensorsWriter writer;
  struct Expected {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Expected> expected;
  const std::vector<int64_t> shapes[] = {{3, 5}, {7}, {}, {2, 0, 3}, {1, 2, 3}};
  int i = 0;
  for (const DType dtype : kAllDTypes) {
    const std::vector<int64_t>& shape = shapes[i % std::size(shapes)];
    Expected e{"t" + std::to_string(i++) + "." + std::string(DTypeName(dtype)), dtype, shape,
               RandomBytes(static_cast<size_t>(*TensorByteSize(dtype, shape)), rng)};
    ASSERT_TRUE(writer.Add(e.name, e.dtype, e.shape, e.bytes).ok());
    expected.push_back(std::move(e));
  }
  int64_t total = 0;
  for (const Expected& e : expected) total += static_cast<int64_t>(e.bytes.size());
  EXPECT_EQ(writer.total_bytes(), total);

  const std::string path = dir.File("all.safetensors");
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = WriteAndOpen(writer, path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->TensorNames().size(), expected.size());
  EXPECT_TRUE((*file)->metadata().empty());

  // Header size is a multiple of 8; the data region holds exactly the tensors, no gaps.
  const std::string raw = ReadBytes(path);
  uint64_t header_size = 0;
  for (int b = 7; b >= 0; --b) header_size = (header_size << 8) | static_cast<uint8_t>(raw[b]);
  EXPECT_EQ(header_size % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + header_size + static_cast<uint64_t>(total));

  for (const Expected& e : expected) {
    SCOPED_TRACE(e.name);
    const TensorView* view = (*file)->Find(e.name);
    ASSERT_NE(view, nullptr);
    EXPECT_EQ(view->dtype, e.dtype);
    EXPECT_EQ(view->shape, e.shape);
    EXPECT_EQ(std::vector<uint8_t>(view->data.begin(), view->data.end()), e.bytes);
    // The mapping starts page-aligned, so this is the file offset's alignment.
    if (!view->data.empty()) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data.data()) %
                    static_cast<uintptr_t>(DTypeSize(e.dtype)),
                0u);
    }
  }
}

TEST(SafetensorsWriterTest, TensorsStartAlignedToTheirElementSize) {
  TempDir dir;
  SafetensorsWriter writer;
  // Odd-sized byte tensors interleaved by name with wider types.
  ASSERT_TRUE(writer.Add("a", DType::kU8, {3}, {1, 2, 3}).ok());
  ASSERT_TRUE(writer.Add("b", DType::kF64, {1}, std::vector<uint8_t>(8, 1)).ok());
  ASSERT_TRUE(writer.Add("c", DType::kI16, {1}, {4, 5}).ok());
  ASSERT_TRUE(writer.Add("d", DType::kF32, {1}, std::vector<uint8_t>(4, 2)).ok());
  const std::string path = dir.File("aligned.safetensors");
  ASSERT_TRUE(writer.WriteFile(path).ok());

  const nlohmann::json header = [&] {
    const std::string raw = ReadBytes(path);
    uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = (n << 8) | static_cast<uint8_t>(raw[b]);
    return nlohmann::json::parse(raw.substr(8, n), nullptr, false);
  }();
  ASSERT_TRUE(header.is_object());
  int64_t end_of_previous = -1;
  // Largest elements first: b (8), d (4), c (2), a (1); offsets contiguous from 0.
  for (const auto& [name, size] :
       std::vector<std::pair<std::string, int64_t>>{{"b", 8}, {"d", 4}, {"c", 2}, {"a", 1}}) {
    const int64_t begin = header[name]["data_offsets"][0].get<int64_t>();
    EXPECT_EQ(begin % size, 0) << name;
    if (end_of_previous >= 0) {
      EXPECT_EQ(begin, end_of_previous) << name;
    }
    end_of_previous = header[name]["data_offsets"][1].get<int64_t>();
  }
  EXPECT_EQ(header["b"]["data_offsets"][0].get<int64_t>(), 0);
}

TEST(SafetensorsWriterTest, MetadataRoundTrips) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("quantization", "old");
  writer.SetMetadata("quantization", "nvfp4");
  ASSERT_TRUE(writer.AddF32("x", {1}, std::vector<float>{1.0f}).ok());
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      WriteAndOpen(writer, dir.File("meta.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"quantization", "nvfp4"}}));
}

TEST(SafetensorsWriterTest, FloatTensorsAreEncodedLittleEndianWithNearestEvenRounding) {
  TempDir dir;
  SafetensorsWriter writer;
  // 1 + 2^-8 is a bf16 tie (1 and 1 + 2^-7): rounds to the even 1.0; 1 + 3 * 2^-8 rounds up.
  const std::vector<float> values = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8),
                                     -2.5f, 65504.0f};
  ASSERT_TRUE(writer.AddF32("f32", {4}, values).ok());
  ASSERT_TRUE(writer.AddF16("f16", {2, 2}, values).ok());
  ASSERT_TRUE(writer.AddBf16("bf16", {4, 1}, values).ok());
  ASSERT_TRUE(writer.AddF32("empty", {0, 3}, {}).ok());
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      WriteAndOpen(writer, dir.File("floats.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();

  const TensorView* empty = (*file)->Find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(empty->data.empty());

  const TensorView* f32 = (*file)->Find("f32");
  ASSERT_NE(f32, nullptr);
  std::vector<float> got(4);
  std::memcpy(got.data(), f32->data.data(), 16);
  EXPECT_EQ(got, values);

  const auto u16_at = [](const TensorView* v, int i) {
    return static_cast<uint16_t>(v->data[2 * i] | (v->data[2 * i + 1] << 8));
  };
  const TensorView* bf16 = (*file)->Find("bf16");
  ASSERT_NE(bf16, nullptr);
  EXPECT_EQ(bf16->dtype, DType::kBF16);
  EXPECT_EQ(numerics::Bf16ToFloat(u16_at(bf16, 0)), 1.0f);
  EXPECT_EQ(numerics::Bf16ToFloat(u16_at(bf16, 1)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(numerics::Bf16ToFloat(u16_at(bf16, 2)), -2.5f);
  EXPECT_EQ(numerics::Bf16ToFloat(u16_at(bf16, 3)), 65536.0f);

  const TensorView* f16 = (*file)->Find("f16");
  ASSERT_NE(f16, nullptr);
  EXPECT_EQ(f16->dtype, DType::kF16);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(numerics::Fp16ToFloat(u16_at(f16, i)), values[i]) << i;  // all exact in fp16
  }
}

TEST(SafetensorsWriterTest, AddRejectsSizeMismatch) {
  SafetensorsWriter writer;
  const absl::Status s = writer.Add("layer.w", DType::kF32, {2, 3}, std::vector<uint8_t>(20));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'layer.w'"));
  EXPECT_THAT(s.message(), HasSubstr("needs 24 bytes, got 20"));
  EXPECT_EQ(writer.total_bytes(), 0);

  const absl::Status f = writer.AddBf16("layer.b", {4}, std::vector<float>(3));
  EXPECT_EQ(f.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.message(), HasSubstr("'layer.b'"));
  EXPECT_THAT(f.message(), HasSubstr("needs 4 values, got 3"));
}

TEST(SafetensorsWriterTest, AddRejectsDuplicateAsAlreadyExists) {
  SafetensorsWriter writer;
  ASSERT_TRUE(writer.Add("x", DType::kU8, {1}, {1}).ok());
  const absl::Status s = writer.AddF32("x", {1}, std::vector<float>{1.0f});
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("'x'"));
  EXPECT_EQ(writer.total_bytes(), 1);
}

TEST(SafetensorsWriterTest, AddRejectsBadNamesAndShapes) {
  SafetensorsWriter writer;
  for (const std::string& name : {std::string(), std::string("__metadata__"), std::string("a\nb"),
                                  std::string("caf\xc3\xa9")}) {
    const absl::Status s = writer.Add(name, DType::kU8, {1}, {1});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(s.message(), HasSubstr("'" + name + "'"));
  }
  const absl::Status neg = writer.Add("neg", DType::kU8, {2, -1}, {});
  EXPECT_EQ(neg.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(neg.message(), HasSubstr("'neg'"));
  EXPECT_THAT(neg.message(), HasSubstr("[2, -1]"));
  const absl::Status huge = writer.Add("huge", DType::kF32, {int64_t{1} << 62, 4}, {});
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.message(), HasSubstr("'huge'"));
}

TEST(SafetensorsWriterTest, WriteFileIntoMissingDirectoryIsNotFoundAndLeavesNothing) {
  TempDir dir;
  SafetensorsWriter writer;
  ASSERT_TRUE(writer.Add("x", DType::kU8, {1}, {1}).ok());
  const std::string path = dir.File("no/such/dir/model.safetensors");
  const absl::Status s = writer.WriteFile(path);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(path));
}

TEST(SafetensorsWriterTest, WriteFileReplacesAtomicallyWithoutLeftovers) {
  TempDir dir;
  const std::string path = dir.File("model.safetensors");
  SafetensorsWriter first;
  ASSERT_TRUE(first.Add("old", DType::kU8, {1}, {1}).ok());
  ASSERT_TRUE(first.WriteFile(path).ok());
  SafetensorsWriter second;
  ASSERT_TRUE(second.Add("new", DType::kU8, {2}, {1, 2}).ok());
  ASSERT_TRUE(second.WriteFile(path).ok());

  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->TensorNames(), std::vector<std::string>{"new"});
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename(), "model.safetensors");
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

}  // namespace
}  // namespace rackserve::io
