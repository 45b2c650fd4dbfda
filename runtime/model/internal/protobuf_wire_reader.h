// ProtobufWireReader: reads the fields of one serialized protobuf message, in order, straight from
// the wire format (https://protobuf.dev/programming-guides/encoding/) -- enough to read a
// SentencePiece model without linking libprotobuf.
//
// Supported wire types: varint (0), fixed64 (1), length-delimited (2) and fixed32 (5); the
// deprecated group types (3, 4) are reported as corrupt. Every error is DATA_LOSS and names
// `source` (the file) and the byte offset in it where the bad field starts.
//
// The reader borrows `bytes` and `source`: the caller keeps them alive while the reader and the
// fields it returns are in use. Not thread-safe (a cursor); cheap to create.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rackserve::model::internal {

enum class WireType : uint8_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kFixed32 = 5,
};

// One field as it appears on the wire. Only the member matching `wire_type` is meaningful.
struct WireField {
  int32_t number = 0;
  WireType wire_type = WireType::kVarint;
  size_t offset = 0;          // of the field's tag, from the start of the file
  uint64_t varint = 0;        // kVarint
  uint32_t fixed32 = 0;       // kFixed32 (little-endian on the wire)
  uint64_t fixed64 = 0;       // kFixed64 (little-endian on the wire)
  std::string_view bytes;     // kLengthDelimited: the payload (borrowed from the reader's input)
  size_t payload_offset = 0;  // kLengthDelimited: offset of `bytes` from the start of the file
};

class ProtobufWireReader {
 public:
  // `bytes` is one message; `base_offset` is where it starts in `source` (nested messages are read
  // with a reader of their own, created from the parent's WireField::bytes/payload_offset).
  ProtobufWireReader(std::string_view bytes, size_t base_offset, std::string_view source);

  bool done() const { return position_ >= bytes_.size(); }

  // The next field. Precondition: !done(). DATA_LOSS for a truncated or malformed field.
  absl::StatusOr<WireField> Next();

  // A DATA_LOSS error for a field whose value is unusable, in the reader's message style:
  // "<source>: byte offset <field.offset>: <what>".
  absl::Status Corrupt(const WireField& field, std::string_view what) const;

 private:
  absl::StatusOr<uint64_t> ReadVarint(size_t field_offset);
  absl::Status CorruptAt(size_t offset, std::string_view what) const;

  std::string_view bytes_;
  size_t base_offset_;
  std::string_view source_;
  size_t position_ = 0;
};

}  // namespace rackserve::model::internal
