#include "runtime/model/internal/protobuf_wire_reader.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::model::internal {
namespace {

using ::testing::HasSubstr;

TEST(ProtobufWireReaderTest, ReadsEveryWireType) {
  // field 1 varint 300; field 2 fixed64; field 3 "hi"; field 4 fixed32; field 5 varint -1.
  const std::string bytes = std::string("\x08\xac\x02", 3) +
                            std::string("\x11\x01\x02\x03\x04\x05\x06\x07\x08", 9) +
                            std::string("\x1a\x02hi", 4) + std::string("\x25\x78\x56\x34\x12", 5) +
                            std::string("\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
  ProtobufWireReader reader(bytes, 100, "m.model");
  absl::StatusOr<WireField> f = reader.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->number, 1);
  EXPECT_EQ(f->wire_type, WireType::kVarint);
  EXPECT_EQ(f->varint, 300u);
  EXPECT_EQ(f->offset, 100u);
  f = reader.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->wire_type, WireType::kFixed64);
  EXPECT_EQ(f->fixed64, 0x0807060504030201u);
  f = reader.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->wire_type, WireType::kLengthDelimited);
  EXPECT_EQ(f->bytes, "hi");
  EXPECT_EQ(f->payload_offset, 114u);
  f = reader.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->wire_type, WireType::kFixed32);
  EXPECT_EQ(f->fixed32, 0x12345678u);
  f = reader.Next();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(static_cast<int32_t>(static_cast<uint32_t>(f->varint)), -1);
  EXPECT_TRUE(reader.done());
}

absl::Status FirstError(const std::string& bytes) {
  ProtobufWireReader reader(bytes, 0, "bad.model");
  while (!reader.done()) {
    absl::StatusOr<WireField> field = reader.Next();
    if (!field.ok()) return field.status();
  }
  return absl::OkStatus();
}

TEST(ProtobufWireReaderTest, ReportsMalformedFieldsWithTheirOffset) {
  const struct {
    std::string bytes;
    std::string message;
  } cases[] = {
      {std::string("\x08\x01\x08", 3), "byte offset 2: truncated varint"},
      {std::string("\x08\x80", 2), "byte offset 0: truncated varint"},
      {std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11), "longer than 64 bits"},
      {std::string("\x00\x01", 2), "invalid field number 0"},
      {std::string("\x12\x05hi", 4), "field 2: length 5 runs past the end (2 bytes left)"},
      {std::string("\x15\x01\x02", 3), "field 2: truncated 32-bit value"},
      {std::string("\x09\x01", 2), "field 1: truncated 64-bit value"},
      {std::string("\x0b", 1), "field 1: unsupported wire type 3"},
      {std::string("\x0e", 1), "field 1: unsupported wire type 6"},
  };
  for (const auto& c : cases) {
    const absl::Status s = FirstError(c.bytes);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << c.message;
    EXPECT_THAT(std::string(s.message()), HasSubstr("bad.model: "));
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace rackserve::model::internal
