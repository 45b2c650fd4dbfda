// No abseil header may be included here (see the header).
#include "runtime/model/internal/sentencepiece_bridge.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

namespace rackserve::model::internal {
namespace {

SpmStatus FromSpm(const sentencepiece::util::Status& status) {
  if (status.ok()) return {};
  return {static_cast<int>(status.code()), status.message()};
}

// Feeds in-memory sentences to the trainer.
class VectorSentenceIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorSentenceIterator(const std::vector<std::string>& sentences)
      : sentences_(sentences) {}
  bool done() const override { return next_ >= sentences_.size(); }
  void Next() override { ++next_; }
  const std::string& value() const override { return sentences_[next_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& sentences_;
  size_t next_ = 0;
};

}  // namespace

SpmProcessor::SpmProcessor()
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}

SpmProcessor::~SpmProcessor() = default;

SpmStatus SpmProcessor::LoadFromSerialized(std::string_view bytes) {
  return FromSpm(processor_->LoadFromSerializedProto(bytes));
}

SpmStatus SpmProcessor::Encode(std::string_view text, std::vector<int>* ids) const {
  return FromSpm(processor_->Encode(text, ids));
}

SpmStatus SpmProcessor::Decode(const std::vector<int>& ids, std::string* text) const {
  return FromSpm(processor_->Decode(ids, text));
}

int SpmProcessor::piece_size() const { return processor_->GetPieceSize(); }
const std::string& SpmProcessor::IdToPiece(int id) const { return processor_->IdToPiece(id); }
float SpmProcessor::GetScore(int id) const { return processor_->GetScore(id); }
int SpmProcessor::bos_id() const { return processor_->bos_id(); }
int SpmProcessor::eos_id() const { return processor_->eos_id(); }

SpmStatus SpmTrain(const std::vector<std::pair<std::string, std::string>>& flags,
                   const std::vector<std::string>& sentences, std::string* model_proto) {
  const std::unordered_map<std::string, std::string> kwargs(flags.begin(), flags.end());
  VectorSentenceIterator iterator(sentences);
  return FromSpm(sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator, model_proto));
}

}  // namespace rackserve::model::internal
