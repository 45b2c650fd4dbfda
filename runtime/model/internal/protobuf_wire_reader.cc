#include "runtime/model/internal/protobuf_wire_reader.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace rackserve::model::internal {
namespace {

constexpr int kMaxVarintBytes = 10;
constexpr uint64_t kMaxFieldNumber = (uint64_t{1} << 29) - 1;

}  // namespace

ProtobufWireReader::ProtobufWireReader(std::string_view bytes, size_t base_offset,
                                       std::string_view source)
    : bytes_(bytes), base_offset_(base_offset), source_(source) {}

absl::Status ProtobufWireReader::CorruptAt(size_t offset, std::string_view what) const {
  return absl::DataLossError(
      absl::StrCat(std::string(source_), ": byte offset ", offset, ": ", std::string(what)));
}

absl::Status ProtobufWireReader::Corrupt(const WireField& field, std::string_view what) const {
  return CorruptAt(field.offset, what);
}

absl::StatusOr<uint64_t> ProtobufWireReader::ReadVarint(size_t field_offset) {
  uint64_t value = 0;
  for (int i = 0; i < kMaxVarintBytes; ++i) {
    if (position_ >= bytes_.size()) {
      return CorruptAt(field_offset, "truncated varint (the file ends inside a field)");
    }
    const auto byte = static_cast<uint8_t>(bytes_[position_++]);
    if (i == kMaxVarintBytes - 1 && byte > 1) {
      return CorruptAt(field_offset, "varint longer than 64 bits");
    }
    value |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) return value;
  }
  return CorruptAt(field_offset, "varint longer than 10 bytes");
}

absl::StatusOr<WireField> ProtobufWireReader::Next() {
  WireField field;
  field.offset = base_offset_ + position_;
  const absl::StatusOr<uint64_t> tag = ReadVarint(field.offset);
  if (!tag.ok()) return tag.status();
  const uint64_t number = *tag >> 3;
  if (number == 0 || number > kMaxFieldNumber) {
    return CorruptAt(field.offset, absl::StrCat("invalid field number ", number));
  }
  field.number = static_cast<int32_t>(number);
  const uint64_t wire_type = *tag & 7;
  const auto FixedWidth = [&](size_t width) -> absl::StatusOr<uint64_t> {
    if (bytes_.size() - position_ < width) {
      return CorruptAt(field.offset, absl::StrCat("field ", number, ": truncated ", width * 8,
                                                  "-bit value (the file ends inside it)"));
    }
    uint64_t value = 0;
    for (size_t i = 0; i < width; ++i) {
      value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[position_ + i])) << (8 * i);
    }
    position_ += width;
    return value;
  };
  switch (wire_type) {
    case 0: {
      field.wire_type = WireType::kVarint;
      absl::StatusOr<uint64_t> value = ReadVarint(field.offset);
      if (!value.ok()) return value.status();
      field.varint = *value;
      return field;
    }
    case 1: {
      field.wire_type = WireType::kFixed64;
      absl::StatusOr<uint64_t> value = FixedWidth(8);
      if (!value.ok()) return value.status();
      field.fixed64 = *value;
      return field;
    }
    case 2: {
      field.wire_type = WireType::kLengthDelimited;
      absl::StatusOr<uint64_t> length = ReadVarint(field.offset);
      if (!length.ok()) return length.status();
      if (*length > bytes_.size() - position_) {
        return CorruptAt(field.offset, absl::StrCat("field ", number, ": length ", *length,
                                                    " runs past the end (",
                                                    bytes_.size() - position_, " bytes left)"));
      }
      field.payload_offset = base_offset_ + position_;
      field.bytes = bytes_.substr(position_, static_cast<size_t>(*length));
      position_ += static_cast<size_t>(*length);
      return field;
    }
    case 5: {
      field.wire_type = WireType::kFixed32;
      absl::StatusOr<uint64_t> value = FixedWidth(4);
      if (!value.ok()) return value.status();
      field.fixed32 = static_cast<uint32_t>(*value);
      return field;
    }
    default:
      return CorruptAt(field.offset,
                       absl::StrCat("field ", number, ": unsupported wire type ", wire_type));
  }
}

}  // namespace rackserve::model::internal
