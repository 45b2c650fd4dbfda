// ReadSpmModel: the parts of a SentencePiece ModelProto (a tokenizer.model file) that encoding and
// decoding need, read with ProtobufWireReader -- no libsentencepiece, no libprotobuf.
//
// Field numbers and defaults follow sentencepiece_model.proto (google/sentencepiece,
// src/sentencepiece_model.proto): ModelProto {pieces 1, trainer_spec 2, normalizer_spec 3,
// self_test_data 4 (skipped), denormalizer_spec 5}; SentencePiece {piece 1, score 2, type 3};
// TrainerSpec {model_type 3, vocab_size 4, treat_whitespace_as_suffix 24, split_digits 25,
// byte_fallback 35, unk_id 40, bos_id 41, eos_id 42, pad_id 43, unk_surface 44, unk_piece 45,
// bos_piece 46, eos_piece 47, pad_piece 48}; NormalizerSpec {name 1, precompiled_charsmap 2,
// add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5}. Other fields are
// skipped. A field given twice keeps the last value; a message given twice is merged, as
// protobuf does.
//
// The reader checks the wire format and the field types only; what the model means (is there an
// unknown piece? is the model type supported?) is the caller's to check. Plain values; the
// function is thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::model::internal {

// ModelProto.SentencePiece.Type.
enum class SpmPieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// TrainerSpec.ModelType.
enum class SpmModelType : int32_t {
  kUnigram = 1,
  kBpe = 2,
  kWord = 3,
  kChar = 4,
};

struct SpmPiece {
  std::string piece;  // UTF-8; U+2581 stands for a space
  float score = 0.0f;
  SpmPieceType type = SpmPieceType::kNormal;
};

struct SpmTrainerSpec {
  SpmModelType model_type = SpmModelType::kUnigram;
  int32_t vocab_size = 8000;
  bool treat_whitespace_as_suffix = false;
  bool split_digits = false;
  bool byte_fallback = false;
  int32_t unk_id = 0;
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  int32_t pad_id = -1;
  std::string unk_surface = " \xE2\x81\x87 ";  // what Decode writes for the unknown piece
  std::string unk_piece = "<unk>";
  std::string bos_piece = "<s>";
  std::string eos_piece = "</s>";
  std::string pad_piece = "<pad>";
};

struct SpmNormalizerSpec {
  std::string name;
  std::string precompiled_charsmap;  // empty for the identity normalizer
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

struct SpmModel {
  std::vector<SpmPiece> pieces;  // index = token id
  bool has_trainer_spec = false;
  SpmTrainerSpec trainer_spec;
  bool has_normalizer_spec = false;
  SpmNormalizerSpec normalizer_spec;
  bool has_denormalizer_spec = false;
  SpmNormalizerSpec denormalizer_spec;
};

// Parses the bytes of a tokenizer.model file; `file` names it in messages. DATA_LOSS naming
// `file`, the byte offset and the field for malformed wire format (truncated data, a field of the
// wrong wire type); INVALID_ARGUMENT naming the piece for an unknown piece type, and naming the
// field for an unknown model type.
absl::StatusOr<SpmModel> ReadSpmModel(std::string_view bytes, std::string_view file);

}  // namespace rackserve::model::internal
