// ModelInfo: what rackctl can learn about the rack's model from its directory when that directory
// is readable on this machine (the local rack): vocabulary size and context length from
// config.json, and the tokenizer from tokenizer.model. Whatever cannot be read keeps its default
// and is explained in `notes` (rackctl then works with token ids). A movable value.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/model/tokenizer.h"

namespace rackserve::client {

struct ModelInfo {
  int64_t vocab_size = 32000;  // Llama 2
  int64_t max_context = 4096;
  std::unique_ptr<model::Tokenizer> tokenizer;  // null: prompts and outputs are token ids
  std::string notes;  // why something could not be read ("" when everything was)
};

// `model_dir` as the coordinator reports it (GetTopology.model). Never fails: see ModelInfo.
ModelInfo ReadModelInfo(const std::string& model_dir);

}  // namespace rackserve::client
