#include "runtime/model/internal/sentencepiece_model_reader.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/internal/protobuf_wire_reader.h"

namespace rackserve::model::internal {
namespace {

// Reads the typed fields of one message; every error names `message` and the field.
class FieldDecoder {
 public:
  FieldDecoder(const ProtobufWireReader& reader, std::string_view message)
      : reader_(reader), message_(message) {}

  absl::Status Expect(const WireField& field, WireType type, std::string_view name) const {
    if (field.wire_type == type) return absl::OkStatus();
    return reader_.Corrupt(
        field,
        absl::StrCat(message_, ".", std::string(name), " (field ", field.number, ") has wire type ",
                     static_cast<int>(field.wire_type), ", expected ", static_cast<int>(type)));
  }
  absl::StatusOr<std::string> String(const WireField& field, std::string_view name) const {
    RS_RETURN_IF_ERROR(Expect(field, WireType::kLengthDelimited, name));
    return std::string(field.bytes);
  }
  absl::StatusOr<bool> Bool(const WireField& field, std::string_view name) const {
    RS_RETURN_IF_ERROR(Expect(field, WireType::kVarint, name));
    return field.varint != 0;
  }
  // int32 and enum fields: the low 32 bits of the varint (negative values are sign-extended to
  // 64 bits on the wire).
  absl::StatusOr<int32_t> Int32(const WireField& field, std::string_view name) const {
    RS_RETURN_IF_ERROR(Expect(field, WireType::kVarint, name));
    return static_cast<int32_t>(static_cast<uint32_t>(field.varint));
  }
  absl::StatusOr<float> Float(const WireField& field, std::string_view name) const {
    RS_RETURN_IF_ERROR(Expect(field, WireType::kFixed32, name));
    float value;
    static_assert(sizeof(value) == sizeof(field.fixed32));
    std::memcpy(&value, &field.fixed32, sizeof(value));
    return value;
  }
  std::string Name(std::string_view field) const {
    return absl::StrCat(message_, ".", std::string(field));
  }

 private:
  const ProtobufWireReader& reader_;
  std::string message_;
};

absl::Status ReadPiece(const WireField& outer, std::string_view file, size_t index,
                       SpmPiece* piece) {
  ProtobufWireReader reader(outer.bytes, outer.payload_offset, file);
  const FieldDecoder decode(reader, absl::StrCat("ModelProto.pieces[", index, "]"));
  while (!reader.done()) {
    RS_ASSIGN_OR_RETURN(const WireField field, reader.Next());
    switch (field.number) {
      case 1: {
        RS_ASSIGN_OR_RETURN(piece->piece, decode.String(field, "piece"));
        break;
      }
      case 2: {
        RS_ASSIGN_OR_RETURN(piece->score, decode.Float(field, "score"));
        break;
      }
      case 3: {
        RS_ASSIGN_OR_RETURN(const int32_t type, decode.Int32(field, "type"));
        if (type < static_cast<int32_t>(SpmPieceType::kNormal) ||
            type > static_cast<int32_t>(SpmPieceType::kByte)) {
          return absl::InvalidArgumentError(absl::StrCat(
              std::string(file), ": ", decode.Name("type"), " is ", type,
              ", not a known piece type (1 NORMAL .. 6 BYTE), at byte offset ", field.offset));
        }
        piece->type = static_cast<SpmPieceType>(type);
        break;
      }
      default:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status ReadTrainerSpec(const WireField& outer, std::string_view file, SpmTrainerSpec* spec) {
  ProtobufWireReader reader(outer.bytes, outer.payload_offset, file);
  const FieldDecoder decode(reader, "ModelProto.trainer_spec");
  while (!reader.done()) {
    RS_ASSIGN_OR_RETURN(const WireField field, reader.Next());
    switch (field.number) {
      case 3: {
        RS_ASSIGN_OR_RETURN(const int32_t type, decode.Int32(field, "model_type"));
        if (type < static_cast<int32_t>(SpmModelType::kUnigram) ||
            type > static_cast<int32_t>(SpmModelType::kChar)) {
          return absl::InvalidArgumentError(absl::StrCat(
              std::string(file), ": ", decode.Name("model_type"), " is ", type,
              ", not a known model type (1 UNIGRAM .. 4 CHAR), at byte offset ", field.offset));
        }
        spec->model_type = static_cast<SpmModelType>(type);
        break;
      }
      case 4: {
        RS_ASSIGN_OR_RETURN(spec->vocab_size, decode.Int32(field, "vocab_size"));
        break;
      }
      case 24: {
        RS_ASSIGN_OR_RETURN(spec->treat_whitespace_as_suffix,
                            decode.Bool(field, "treat_whitespace_as_suffix"));
        break;
      }
      case 25: {
        RS_ASSIGN_OR_RETURN(spec->split_digits, decode.Bool(field, "split_digits"));
        break;
      }
      case 35: {
        RS_ASSIGN_OR_RETURN(spec->byte_fallback, decode.Bool(field, "byte_fallback"));
        break;
      }
      case 40: {
        RS_ASSIGN_OR_RETURN(spec->unk_id, decode.Int32(field, "unk_id"));
        break;
      }
      case 41: {
        RS_ASSIGN_OR_RETURN(spec->bos_id, decode.Int32(field, "bos_id"));
        break;
      }
      case 42: {
        RS_ASSIGN_OR_RETURN(spec->eos_id, decode.Int32(field, "eos_id"));
        break;
      }
      case 43: {
        RS_ASSIGN_OR_RETURN(spec->pad_id, decode.Int32(field, "pad_id"));
        break;
      }
      case 44: {
        RS_ASSIGN_OR_RETURN(spec->unk_surface, decode.String(field, "unk_surface"));
        break;
      }
      case 45: {
        RS_ASSIGN_OR_RETURN(spec->unk_piece, decode.String(field, "unk_piece"));
        break;
      }
      case 46: {
        RS_ASSIGN_OR_RETURN(spec->bos_piece, decode.String(field, "bos_piece"));
        break;
      }
      case 47: {
        RS_ASSIGN_OR_RETURN(spec->eos_piece, decode.String(field, "eos_piece"));
        break;
      }
      case 48: {
        RS_ASSIGN_OR_RETURN(spec->pad_piece, decode.String(field, "pad_piece"));
        break;
      }
      default:
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status ReadNormalizerSpec(const WireField& outer, std::string_view file,
                                std::string_view message, SpmNormalizerSpec* spec) {
  ProtobufWireReader reader(outer.bytes, outer.payload_offset, file);
  const FieldDecoder decode(reader, message);
  while (!reader.done()) {
    RS_ASSIGN_OR_RETURN(const WireField field, reader.Next());
    switch (field.number) {
      case 1: {
        RS_ASSIGN_OR_RETURN(spec->name, decode.String(field, "name"));
        break;
      }
      case 2: {
        RS_ASSIGN_OR_RETURN(spec->precompiled_charsmap,
                            decode.String(field, "precompiled_charsmap"));
        break;
      }
      case 3: {
        RS_ASSIGN_OR_RETURN(spec->add_dummy_prefix, decode.Bool(field, "add_dummy_prefix"));
        break;
      }
      case 4: {
        RS_ASSIGN_OR_RETURN(spec->remove_extra_whitespaces,
                            decode.Bool(field, "remove_extra_whitespaces"));
        break;
      }
      case 5: {
        RS_ASSIGN_OR_RETURN(spec->escape_whitespaces, decode.Bool(field, "escape_whitespaces"));
        break;
      }
      default:
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpmModel> ReadSpmModel(std::string_view bytes, std::string_view file) {
  SpmModel model;
  ProtobufWireReader reader(bytes, 0, file);
  const FieldDecoder decode(reader, "ModelProto");
  while (!reader.done()) {
    RS_ASSIGN_OR_RETURN(const WireField field, reader.Next());
    switch (field.number) {
      case 1: {
        RS_RETURN_IF_ERROR(decode.Expect(field, WireType::kLengthDelimited, "pieces"));
        SpmPiece piece;
        RS_RETURN_IF_ERROR(ReadPiece(field, file, model.pieces.size(), &piece));
        model.pieces.push_back(std::move(piece));
        break;
      }
      case 2: {
        RS_RETURN_IF_ERROR(decode.Expect(field, WireType::kLengthDelimited, "trainer_spec"));
        RS_RETURN_IF_ERROR(ReadTrainerSpec(field, file, &model.trainer_spec));
        model.has_trainer_spec = true;
        break;
      }
      case 3: {
        RS_RETURN_IF_ERROR(decode.Expect(field, WireType::kLengthDelimited, "normalizer_spec"));
        RS_RETURN_IF_ERROR(ReadNormalizerSpec(field, file, decode.Name("normalizer_spec"),
                                              &model.normalizer_spec));
        model.has_normalizer_spec = true;
        break;
      }
      case 5: {
        RS_RETURN_IF_ERROR(decode.Expect(field, WireType::kLengthDelimited, "denormalizer_spec"));
        RS_RETURN_IF_ERROR(ReadNormalizerSpec(field, file, decode.Name("denormalizer_spec"),
                                              &model.denormalizer_spec));
        model.has_denormalizer_spec = true;
        break;
      }
      default:
        break;
    }
  }
  return model;
}

}  // namespace rackserve::model::internal
