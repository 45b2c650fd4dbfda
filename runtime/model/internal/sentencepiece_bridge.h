// The one place that includes SentencePiece's headers.
//
// Debian's SentencePiece 0.1.97 headers declare `namespace absl { using std::string_view; }`,
// which collides with abseil 20220623's own class absl::string_view: no translation unit can
// include both. This bridge exposes what rackserve uses of SentencePiece through std types only;
// its .cc includes no abseil header, and callers convert SpmStatus to absl::Status (the codes
// share the canonical numbering of absl::StatusCode).
//
// Users: TrainTokenizer (training) and the tokenizer tests, which use SpmProcessor as the oracle
// the project's own reader and encoder (tokenizer.h) must match. Serving never calls it.
// SpmProcessor: Load once, then its const methods are thread-safe. Not copyable.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace rackserve::model::internal {

struct SpmStatus {
  int code = 0;  // canonical status code: 0 OK, 3 INVALID_ARGUMENT, 5 NOT_FOUND, ...
  std::string message;
  bool ok() const { return code == 0; }
};

class SpmProcessor {
 public:
  SpmProcessor();
  ~SpmProcessor();
  SpmProcessor(const SpmProcessor&) = delete;
  SpmProcessor& operator=(const SpmProcessor&) = delete;

  // Parses a serialized ModelProto (the bytes of a tokenizer.model file).
  SpmStatus LoadFromSerialized(std::string_view bytes);
  SpmStatus Encode(std::string_view text, std::vector<int>* ids) const;
  // Precondition: every id is in [0, piece_size()).
  SpmStatus Decode(const std::vector<int>& ids, std::string* text) const;

  int piece_size() const;
  const std::string& IdToPiece(int id) const;  // Precondition: id in [0, piece_size())
  float GetScore(int id) const;                // Precondition: id in [0, piece_size())
  int bos_id() const;                          // -1 when the model has none
  int eos_id() const;                          // -1 when the model has none

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

// Trains a model from `sentences` with SentencePieceTrainer flags given as name/value pairs
// (e.g. {"model_type", "bpe"}; no "model_prefix") and stores the serialized ModelProto (the
// bytes of a tokenizer.model file) in `model_proto`. Writes no file.
SpmStatus SpmTrain(const std::vector<std::pair<std::string, std::string>>& flags,
                   const std::vector<std::string>& sentences, std::string* model_proto);

}  // namespace rackserve::model::internal
