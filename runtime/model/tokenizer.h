// Tokenizer: text <-> token ids with a SentencePiece model (the tokenizer.model of Llama 2, or one
// written by TrainTokenizer), read and run by rackserve's own code: no libsentencepiece (and so no
// protobuf-lite clash) at run time, so any program -- gRPC ones included -- can tokenize.
//
// Supported models: BPE (TrainerSpec.model_type = BPE) with the identity normalizer (no
// precompiled_charsmap), with or without a dummy prefix, extra-whitespace removal, whitespace
// escaping to U+2581, byte fallback (<0xNN> pieces), USER_DEFINED, CONTROL and UNUSED pieces.
// Encode and Decode give exactly what libsentencepiece's SentencePieceProcessor gives for these
// models (checked against it by tests/model/tokenizer_oracle_test).
//
// Encode never adds an end-of-sequence id; it adds the model's beginning-of-sequence id in front
// when asked. Decode drops control tokens (bos, eos) and turns byte-fallback pieces back into
// bytes, so Decode(Encode(text)) == text for any valid UTF-8 text the model's normalizer leaves
// intact (for TrainTokenizer's models: all of it but U+2581, which stands for a space). Bytes that
// are not UTF-8 are encoded as U+FFFD, as libsentencepiece does.
//
// Immutable after Load: the const methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rackserve::model {

class Tokenizer {
 public:
  // NOT_FOUND when `path` does not exist; DATA_LOSS naming `path` and the byte offset when the
  // file is not well-formed protobuf (e.g. truncated); INVALID_ARGUMENT naming `path` when it is
  // not a valid SentencePiece model (no trainer_spec, no <unk> piece, duplicate pieces, ...);
  // UNIMPLEMENTED naming `path` and the feature for a model this tokenizer does not support
  // (unigram/word/char models, a non-identity normalizer, whitespace as suffix).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // FAILED_PRECONDITION when add_bos is set and the model has no bos id; INVALID_ARGUMENT naming
  // the size for a text over 256 MiB.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos) const;
  // INVALID_ARGUMENT naming the id and its position for an id outside [0, vocab_size()).
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const;

  int vocab_size() const;
  int32_t bos_id() const;  // -1 when the model has none
  int32_t eos_id() const;  // -1 when the model has none

 private:
  struct Model;
  explicit Tokenizer(std::unique_ptr<const Model> model);

  std::unique_ptr<const Model> model_;
};

}  // namespace rackserve::model
