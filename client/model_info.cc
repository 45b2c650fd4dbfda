#include "client/model_info.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "runtime/model/model_config.h"

namespace rackserve::client {

ModelInfo ReadModelInfo(const std::string& model_dir) {
  ModelInfo info;
  const std::filesystem::path dir = model_dir;
  auto config = model::ModelConfig::FromFile(dir / "config.json");
  if (config.ok()) {
    info.vocab_size = config->vocab_size;
    info.max_context = config->max_position_embeddings;
  } else {
    absl::StrAppend(&info.notes, "model config not readable here (", config.status().message(),
                    "): assuming vocabulary ", info.vocab_size, ", context ", info.max_context,
                    ". ");
  }
  auto tokenizer = model::Tokenizer::Load((dir / "tokenizer.model").string());
  if (tokenizer.ok()) {
    info.tokenizer = *std::move(tokenizer);
  } else {
    absl::StrAppend(&info.notes, "no tokenizer loaded (", tokenizer.status().message(),
                    "): output shown as token ids.");
  }
  return info;
}

}  // namespace rackserve::client
