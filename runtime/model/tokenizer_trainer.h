// TrainTokenizer: writes a small SentencePiece BPE tokenizer, learned from a built-in English
// corpus, for the generated models that tests, benchmarks and the demo run (no download).
//
// The model follows Llama 2's tokenizer conventions: special ids unk 0, bos 1, eos 2 (no pad),
// byte fallback (text outside the corpus's characters becomes <0xNN> byte pieces, so any UTF-8
// text round-trips), digits split, no normalization, a dummy prefix space. Training is
// deterministic (the same vocab_size writes the same bytes) and takes milliseconds.
//
// Thread-safe, but calls that write into the same directory race on its files.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace rackserve::model {

// Writes `<dir>/tokenizer.model` and `<dir>/tokenizer.vocab` (replacing them). The vocabulary
// holds at most `vocab_size` pieces (fewer when the corpus supports no more merges).
// INVALID_ARGUMENT when vocab_size < MinTokenizerVocabSize(); NOT_FOUND when `dir` is not an
// existing directory.
absl::Status TrainTokenizer(const std::string& dir, int vocab_size);

// The smallest vocab_size TrainTokenizer accepts: 3 special pieces + 256 byte pieces + one piece
// per distinct character of the corpus.
int MinTokenizerVocabSize();

// The built-in corpus: a few hundred deterministic English sentences (ASCII; letters of both
// cases, digits, punctuation).
const std::vector<std::string>& TokenizerTrainingCorpus();

}  // namespace rackserve::model
