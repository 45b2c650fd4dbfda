// Tests SafetensorsFile::Open on hand-crafted files: valid layouts (metadata, gaps, scalars,
// empty tensors) and one test per corruption, each checking the exact status code and that the
// message names the file and, where there is one, the tensor.
#include "runtime/io/safetensors_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "tests/io/test_files.h"

namespace rackserve::io {
namespace {

using ::rackserve::io::testing::SafetensorsImage;
using ::rackserve::io::testing::TempDir;
using ::rackserve::io::testing::WriteBytes;
using ::testing::HasSubstr;

class SafetensorsFileTest : public ::testing::Test {
 protected:
  // Writes `image` to a fresh file and opens it.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenImage(const std::string& image) {
    WriteBytes(path_, image);
    return SafetensorsFile::Open(path_);
  }

  // Opens `image` and expects `code` with a message naming the file and `needles`.
  void ExpectError(const std::string& image, absl::StatusCode code,
                   std::initializer_list<std::string> needles) {
    const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = OpenImage(image);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), code) << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr(path_));
    for (const std::string& needle : needles) {
      EXPECT_THAT(file.status().message(), HasSubstr(needle));
    }
  }

  TempDir dir_;
  const std::string path_ = dir_.File("weights.safetensors");
};

TEST_F(SafetensorsFileTest, OpensValidFileWithMetadataGapsScalarsAndEmptyTensors) {
  // "w": F32 [2] at [0, 8); "s": I16 scalar at [8, 10); a 6-byte gap; "b": U8 [3] at [16, 19);
  // "e": BF16 [0, 4] empty at [19, 19). Trailing spaces pad the header, as writers do.
  const std::string header =
      R"({"__metadata__": {"format": "pt", "note": "x"},)"
      R"("w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
      R"("s": {"dtype": "I16", "shape": [], "data_offsets": [8, 10]},)"
      R"("b": {"dtype": "U8", "shape": [3], "data_offsets": [16, 19]},)"
      R"("e": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [19, 19]}}    )";
  std::string data(19, '\0');
  const float w[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), w, sizeof w);
  data[8] = 0x34;
  data[9] = 0x12;
  data[16] = 7;
  data[17] = 8;
  data[18] = 9;
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      OpenImage(SafetensorsImage(header, data));
  ASSERT_TRUE(file.ok()) << file.status();
  const SafetensorsFile& f = **file;
  EXPECT_EQ(f.path(), path_);
  EXPECT_EQ(f.TensorNames(), (std::vector<std::string>{"b", "e", "s", "w"}));
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  EXPECT_EQ(f.Find("missing"), nullptr);
  EXPECT_EQ(f.Find("__metadata__"), nullptr);

  const TensorView* wv = f.Find("w");
  ASSERT_NE(wv, nullptr);
  EXPECT_EQ(wv->name, "w");
  EXPECT_EQ(wv->dtype, DType::kF32);
  EXPECT_EQ(wv->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(wv->numel(), 2);
  ASSERT_EQ(wv->data.size(), 8u);
  float got[2];
  std::memcpy(got, wv->data.data(), sizeof got);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.0f);

  const TensorView* sv = f.Find("s");
  ASSERT_NE(sv, nullptr);
  EXPECT_TRUE(sv->shape.empty());
  EXPECT_EQ(sv->numel(), 1);
  ASSERT_EQ(sv->data.size(), 2u);
  EXPECT_EQ(sv->data[0] | (sv->data[1] << 8), 0x1234);

  const TensorView* bv = f.Find("b");
  ASSERT_NE(bv, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(bv->data.begin(), bv->data.end()),
            (std::vector<uint8_t>{7, 8, 9}));

  const TensorView* ev = f.Find("e");
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->numel(), 0);
  EXPECT_TRUE(ev->data.empty());
}

TEST_F(SafetensorsFileTest, EmptyHeaderObjectIsValid) {
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      OpenImage(SafetensorsImage("{}      ", ""));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->TensorNames().empty());
  EXPECT_TRUE((*file)->metadata().empty());
}

TEST_F(SafetensorsFileTest, MissingFileIsNotFound) {
  const std::string missing = dir_.File("nope.safetensors");
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(missing);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr(missing));
}

TEST_F(SafetensorsFileTest, DirectoryIsInvalidArgument) {
  const absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(dir_.path());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr(dir_.path()));
}

TEST_F(SafetensorsFileTest, FileShorterThanHeaderSizeIsDataLoss) {
  ExpectError("", absl::StatusCode::kDataLoss, {"truncated"});
  ExpectError(std::string("\x02\0\0\0\0", 5), absl::StatusCode::kDataLoss, {"truncated"});
}

TEST_F(SafetensorsFileTest, HeaderSizePastEndOfFileIsDataLoss) {
  ExpectError(SafetensorsImage("{}", "", 1000), absl::StatusCode::kDataLoss,
              {"1000", "past the end"});
}

TEST_F(SafetensorsFileTest, AbsurdHeaderSizeIsDataLoss) {
  ExpectError(SafetensorsImage("{}", "", uint64_t{1} << 60), absl::StatusCode::kDataLoss,
              {"exceeds"});
  ExpectError(SafetensorsImage("{}", "", ~uint64_t{0}), absl::StatusCode::kDataLoss, {"exceeds"});
}

TEST_F(SafetensorsFileTest, TruncatedDataRegionIsDataLossNamingTensor) {
  const std::string header = R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})";
  ExpectError(SafetensorsImage(header, std::string(12, '\0')), absl::StatusCode::kDataLoss,
              {"'a'", "past the end of the data region"});
}

TEST_F(SafetensorsFileTest, MalformedJsonIsDataLoss) {
  ExpectError(SafetensorsImage(R"({"a": {"dtype": "F32", )", ""), absl::StatusCode::kDataLoss,
              {"not valid JSON"});
  ExpectError(SafetensorsImage("\xff\xfe", ""), absl::StatusCode::kDataLoss, {"not valid JSON"});
  ExpectError(SafetensorsImage("[1, 2]", ""), absl::StatusCode::kDataLoss, {"not a JSON object"});
}

TEST_F(SafetensorsFileTest, MissingOrMistypedFieldsAreDataLossNamingTensor) {
  const char* const bad_entries[] = {
      R"({"t": 5})",
      R"({"t": {"shape": [1], "data_offsets": [0, 4]}})",
      R"({"t": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})",
      R"({"t": {"dtype": "F32", "data_offsets": [0, 4]}})",
      R"({"t": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})",
      R"({"t": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})",
      R"({"t": {"dtype": "F32", "shape": [1]}})",
      R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})",
      R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})",
      R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": ["0", 4]}})",
      R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 4]}})",
      R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": {"begin": 0}}})",
  };
  for (const char* header : bad_entries) {
    SCOPED_TRACE(header);
    ExpectError(SafetensorsImage(header, std::string(8, '\0')), absl::StatusCode::kDataLoss,
                {"tensor 't'"});
  }
}

TEST_F(SafetensorsFileTest, UnknownDtypeIsInvalidArgumentNamingTensorAndDtype) {
  ExpectError(SafetensorsImage(R"({"t": {"dtype": "U16", "shape": [2], "data_offsets": [0, 4]}})",
                               std::string(4, '\0')),
              absl::StatusCode::kInvalidArgument, {"tensor 't'", "U16"});
}

TEST_F(SafetensorsFileTest, NegativeDimensionIsDataLoss) {
  ExpectError(
      SafetensorsImage(R"({"t": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}})",
                       std::string(8, '\0')),
      absl::StatusCode::kDataLoss, {"tensor 't'", "[-1,2]"});
}

TEST_F(SafetensorsFileTest, BeginAfterEndIsDataLoss) {
  ExpectError(SafetensorsImage(R"({"t": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})",
                               std::string(8, '\0')),
              absl::StatusCode::kDataLoss, {"tensor 't'", "[4, 0]"});
}

TEST_F(SafetensorsFileTest, OffsetsPastDataRegionAreDataLoss) {
  ExpectError(SafetensorsImage(R"({"t": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]}})",
                               std::string(8, '\0')),
              absl::StatusCode::kDataLoss, {"tensor 't'", "[6, 10]", "8 bytes"});
}

TEST_F(SafetensorsFileTest, ByteCountMismatchIsDataLoss) {
  ExpectError(SafetensorsImage(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                               std::string(16, '\0')),
              absl::StatusCode::kDataLoss, {"tensor 't'", "needs 12"});
}

TEST_F(SafetensorsFileTest, OverflowingShapeIsDataLossNotACrash) {
  ExpectError(SafetensorsImage(R"({"t": {"dtype": "F32", "shape": [4611686018427387904, 4],)"
                               R"( "data_offsets": [0, 8]}})",
                               std::string(8, '\0')),
              absl::StatusCode::kDataLoss, {"tensor 't'", "2^63"});
  ExpectError(SafetensorsImage(R"({"t": {"dtype": "U8", "shape": [18446744073709551615],)"
                               R"( "data_offsets": [0, 8]}})",
                               std::string(8, '\0')),
              absl::StatusCode::kDataLoss, {"tensor 't'"});
}

TEST_F(SafetensorsFileTest, OverlappingRangesAreDataLossNamingBothTensors) {
  const std::string header =
      R"({"first": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
      R"("second": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  ExpectError(SafetensorsImage(header, std::string(12, '\0')), absl::StatusCode::kDataLoss,
              {"'first'", "'second'", "overlap"});
  // The same range twice also overlaps.
  const std::string same = R"({"x": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                           R"("y": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]}})";
  ExpectError(SafetensorsImage(same, std::string(4, '\0')), absl::StatusCode::kDataLoss,
              {"'x'", "'y'", "overlap"});
}

TEST_F(SafetensorsFileTest, DuplicateTensorNameIsDataLoss) {
  const std::string header = R"({"dup": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                             R"("dup": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})";
  ExpectError(SafetensorsImage(header, std::string(8, '\0')), absl::StatusCode::kDataLoss,
              {"'dup'", "more than once"});
}

TEST_F(SafetensorsFileTest, MalformedMetadataIsDataLoss) {
  ExpectError(SafetensorsImage(R"({"__metadata__": ["pt"]})", ""), absl::StatusCode::kDataLoss,
              {"__metadata__"});
  ExpectError(SafetensorsImage(R"({"__metadata__": {"step": 5}})", ""), absl::StatusCode::kDataLoss,
              {"__metadata__", "'step'"});
}

}  // namespace
}  // namespace rackserve::io
