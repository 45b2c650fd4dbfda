// Tokenizer: text <-> token ids with a SentencePiece model (the tokenizer.model of Llama 2, or one
// written by TrainTokenizer).
//
// Encode never adds an end-of-sequence id; it adds the model's beginning-of-sequence id in front
// when asked. Decode drops control tokens (bos, eos) and turns byte-fallback pieces back into
// bytes, so Decode(Encode(text)) == text for any UTF-8 text the model's normalizer leaves intact
// (all text, for TrainTokenizer's models).
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

namespace internal {
class SpmProcessor;
}  // namespace internal

class Tokenizer {
 public:
  // NOT_FOUND when `path` does not exist; INVALID_ARGUMENT naming `path` when it is not a
  // SentencePiece model.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // FAILED_PRECONDITION when add_bos is set and the model has no bos id.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_bos) const;
  // INVALID_ARGUMENT naming the id and its position for an id outside [0, vocab_size()).
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids) const;

  int vocab_size() const;
  int32_t bos_id() const;  // -1 when the model has none
  int32_t eos_id() const;  // -1 when the model has none

 private:
  Tokenizer(std::string path, std::unique_ptr<internal::SpmProcessor> processor);

  std::string path_;  // for messages
  std::unique_ptr<internal::SpmProcessor> processor_;
};

}  // namespace rackserve::model
