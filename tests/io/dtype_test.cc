// Tests dtype names, sizes and overflow-safe tensor byte sizes.
#include "runtime/io/dtype.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace rackserve::io {
namespace {

using ::testing::HasSubstr;

TEST(DTypeTest, NamesRoundTripAndSizes) {
  struct Case {
    DType dtype;
    const char* name;
    int64_t size;
  };
  const Case cases[] = {
      {DType::kF64, "F64", 8},   {DType::kF32, "F32", 4},        {DType::kF16, "F16", 2},
      {DType::kBF16, "BF16", 2}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kI64, "I64", 8},
      {DType::kI32, "I32", 4},   {DType::kI16, "I16", 2},        {DType::kI8, "I8", 1},
      {DType::kU8, "U8", 1},     {DType::kBool, "BOOL", 1}};
  for (const Case& c : cases) {
    EXPECT_EQ(DTypeName(c.dtype), c.name);
    EXPECT_EQ(DTypeSize(c.dtype), c.size) << c.name;
    const absl::StatusOr<DType> parsed = ParseDType(c.name);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, c.dtype);
  }
  EXPECT_TRUE(IsFloatDType(DType::kF32));
  EXPECT_TRUE(IsFloatDType(DType::kBF16));
  EXPECT_TRUE(IsFloatDType(DType::kF16));
  EXPECT_FALSE(IsFloatDType(DType::kF8E4M3));
  EXPECT_FALSE(IsFloatDType(DType::kF64));
}

TEST(DTypeTest, UnknownNameIsInvalidArgumentNamingIt) {
  for (const char* name : {"U16", "F8_E5M2", "f32", ""}) {
    const absl::StatusOr<DType> parsed = ParseDType(name);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(parsed.status().message(), HasSubstr(std::string("'") + name + "'"));
  }
}

TEST(DTypeTest, TensorByteSizeIsOverflowSafe) {
  EXPECT_EQ(TensorByteSize(DType::kF32, std::vector<int64_t>{}), 4);  // scalar
  EXPECT_EQ(TensorByteSize(DType::kBF16, std::vector<int64_t>{3, 5}), 30);
  EXPECT_EQ(TensorByteSize(DType::kF64, std::vector<int64_t>{0, 7}), 0);
  EXPECT_EQ(TensorByteSize(DType::kI32, std::vector<int64_t>{2, -1}), std::nullopt);
  const int64_t big = int64_t{1} << 62;
  EXPECT_EQ(TensorByteSize(DType::kU8, std::vector<int64_t>{big, 4}), std::nullopt);
  EXPECT_EQ(TensorByteSize(DType::kF32, std::vector<int64_t>{big}), std::nullopt);
  EXPECT_EQ(TensorByteSize(DType::kU8, std::vector<int64_t>{big}), big);
  EXPECT_EQ(TensorByteSize(DType::kU8, std::vector<int64_t>{big, 4, 0}), 0);
}

}  // namespace
}  // namespace rackserve::io
