#include "runtime/model/tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/internal/sentencepiece_bridge.h"
#include "runtime/model/internal/sentencepiece_status.h"

namespace rackserve::model {
Tokenizer::Tokenizer(std::string path, std::unique_ptr<internal::SpmProcessor> processor)
    : path_(std::move(path)), processor_(std::move(processor)) {}

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  RS_ASSIGN_OR_RETURN(std::string bytes, internal::ReadFileContents(path));
  auto processor = std::make_unique<internal::SpmProcessor>();
  const internal::SpmStatus loaded = processor->LoadFromSerialized(bytes);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a SentencePiece model (", loaded.message, ")"));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(path, std::move(processor)));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  if (add_bos && bos_id() < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": the tokenizer has no bos token to add"));
  }
  std::vector<int> pieces;
  RS_RETURN_IF_ERROR(
      internal::SpmToStatus(processor_->Encode(text, &pieces), absl::StrCat(path_, ": encode")));
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + (add_bos ? 1 : 0));
  if (add_bos) ids.push_back(bos_id());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids) const {
  const int size = vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ", size,
                                                     ") of ", path_));
    }
  }
  std::string text;
  RS_RETURN_IF_ERROR(
      internal::SpmToStatus(processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text),
                            absl::StrCat(path_, ": decode")));
  return text;
}

int Tokenizer::vocab_size() const { return processor_->piece_size(); }
int32_t Tokenizer::bos_id() const { return processor_->bos_id(); }
int32_t Tokenizer::eos_id() const { return processor_->eos_id(); }

}  // namespace rackserve::model
