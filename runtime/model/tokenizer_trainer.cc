#include "runtime/model/tokenizer_trainer.h"

#include <array>
#include <filesystem>
#include <random>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/internal/sentencepiece_bridge.h"
#include "runtime/model/internal/sentencepiece_status.h"

namespace rackserve::model {
namespace {

constexpr int kSpecialPieces = 3;  // unk, bos, eos
constexpr int kBytePieces = 256;
constexpr int kGeneratedSentences = 400;

constexpr std::array<const char*, 5> kPangrams = {
    "The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump!",         "Sphinx of black quartz, judge my vow.",
    "The five boxing wizards jump quickly.",
};
constexpr std::array<const char*, 26> kNames = {
    "Alice", "Bob",   "Carol",  "David",  "Eve",    "Frank",  "Grace",  "Heidi", "Ivan",
    "Judy",  "Kevin", "Laura",  "Maria",  "Nina",   "Oscar",  "Peggy",  "Quinn", "Rupert",
    "Sybil", "Trent", "Ursula", "Victor", "Walter", "Xavier", "Yvonne", "Zoe"};
// {singular, plural}
constexpr std::array<std::pair<const char*, const char*>, 22> kNouns = {
    {{"book", "books"},       {"river", "rivers"},     {"engine", "engines"},
     {"student", "students"}, {"map", "maps"},         {"window", "windows"},
     {"garden", "gardens"},   {"bridge", "bridges"},   {"letter", "letters"},
     {"machine", "machines"}, {"teacher", "teachers"}, {"bird", "birds"},
     {"cloud", "clouds"},     {"road", "roads"},       {"table", "tables"},
     {"song", "songs"},       {"ship", "ships"},       {"tree", "trees"},
     {"friend", "friends"},   {"market", "markets"},   {"fox", "foxes"},
     {"dog", "dogs"}}};
constexpr std::array<const char*, 18> kAdjectives = {
    "old",   "bright", "quiet", "heavy",  "small",  "green",  "strange", "careful", "happy",
    "large", "cold",   "early", "simple", "broken", "famous", "gentle",  "quick",   "brown"};
struct Verb {
  const char* base;
  const char* past;
};
constexpr std::array<Verb, 14> kVerbs = {{
    {"find", "found"},
    {"repair", "repaired"},
    {"carry", "carried"},
    {"watch", "watched"},
    {"open", "opened"},
    {"paint", "painted"},
    {"follow", "followed"},
    {"build", "built"},
    {"read", "read"},
    {"visit", "visited"},
    {"write", "wrote"},
    {"move", "moved"},
    {"clean", "cleaned"},
    {"see", "saw"},
}};
constexpr std::array<const char*, 10> kAdverbs = {
    "quietly", "quickly", "carefully", "again",    "together",
    "slowly",  "today",   "yesterday", "at night", "in the morning"};
constexpr std::array<const char*, 8> kPlaces = {
    "near the river", "in the city",      "behind the school", "on the hill",
    "at the station", "under the bridge", "in the garden",     "by the sea"};

// Picks words and numbers from a fixed-seed generator; std::mt19937's sequence is fixed by the
// C++ standard, so the corpus is the same on every platform.
class Picker {
 public:
  template <typename T, size_t N>
  const T& From(const std::array<T, N>& items) {
    return items[rng_() % N];
  }
  int Number(int below) { return static_cast<int>(rng_() % static_cast<uint32_t>(below)); }

 private:
  std::mt19937 rng_{20240601};
};

std::string Sentence(int index, Picker& p) {
  const char* name = p.From(kNames);
  const auto& [noun, nouns] = p.From(kNouns);
  const char* noun2 = p.From(kNouns).first;
  const char* adjective = p.From(kAdjectives);
  const char* adjective2 = p.From(kAdjectives);
  const Verb& verb = p.From(kVerbs);
  switch (index % 8) {
    case 0:
      return absl::StrCat(name, " ", verb.past, " the ", adjective, " ", noun, " ",
                          p.From(kAdverbs), ".");
    case 1:
      return absl::StrCat("The ", adjective, " ", noun, " ", verb.past, " a ", noun2, " ",
                          p.From(kPlaces), ".");
    case 2:
      return absl::StrCat("Why did ", name, " ", verb.base, " the ", adjective, " ", noun, " ",
                          p.From(kAdverbs), "?");
    case 3:
      return absl::StrCat("In ", 1900 + p.Number(130), ", ", 2 + p.Number(998), " ", nouns,
                          " were counted ", p.From(kPlaces), ".");
    case 4:
      return absl::StrFormat("%s said, \"The %s costs $%d.%02d today!\"", name, noun, p.Number(100),
                             p.Number(100));
    case 5:
      return absl::StrCat("Is it true that ", p.Number(101), "% of the ", nouns, " are ", adjective,
                          "? Yes; about ", p.Number(50), " (or ", p.Number(50), ") of them.");
    case 6:
      return absl::StrFormat("Note: %s's %s - %s and %s - was ready at %d:%02d.", name, noun,
                             adjective, adjective2, p.Number(24), p.Number(60));
    default:
      return absl::StrCat("Compute x = ", p.Number(1000), " * ", p.Number(100), " + ", p.Number(10),
                          " / 2 & check #", p.Number(10000), " for the ", noun, ".");
  }
}

std::vector<std::string> BuildCorpus() {
  std::vector<std::string> corpus(kPangrams.begin(), kPangrams.end());
  Picker picker;
  for (int i = 0; i < kGeneratedSentences; ++i) corpus.push_back(Sentence(i, picker));
  return corpus;
}

}  // namespace

const std::vector<std::string>& TokenizerTrainingCorpus() {
  static const auto* corpus = new std::vector<std::string>(BuildCorpus());
  return *corpus;
}

int MinTokenizerVocabSize() {
  std::set<char> characters;
  for (const std::string& sentence : TokenizerTrainingCorpus()) {
    characters.insert(sentence.begin(), sentence.end());
  }
  return kSpecialPieces + kBytePieces + static_cast<int>(characters.size());
}

absl::Status TrainTokenizer(const std::string& dir, int vocab_size) {
  const int min_vocab_size = MinTokenizerVocabSize();
  if (vocab_size < min_vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer vocab_size ", vocab_size, " is below the minimum ", min_vocab_size,
                     " (", kSpecialPieces, " special + ", kBytePieces, " byte pieces + ",
                     min_vocab_size - kSpecialPieces - kBytePieces, " corpus characters)"));
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such directory for the tokenizer"));
  }
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"model_type", "bpe"},
      {"vocab_size", absl::StrCat(vocab_size)},
      {"hard_vocab_limit", "false"},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"num_threads", "1"},
      {"minloglevel", "2"},  // SentencePiece logs to stderr otherwise
  };
  std::string model_proto;
  RS_RETURN_IF_ERROR(
      internal::SpmToStatus(internal::SpmTrain(flags, TokenizerTrainingCorpus(), &model_proto),
                            absl::StrCat("training the tokenizer for ", dir)));
  internal::SpmProcessor processor;
  RS_RETURN_IF_ERROR(
      internal::SpmToStatus(processor.LoadFromSerialized(model_proto),
                            absl::StrCat("loading the tokenizer trained for ", dir)));
  // tokenizer.vocab, as spm_train writes it: one "piece<TAB>score" line per id.
  std::string vocab;
  for (int id = 0; id < processor.piece_size(); ++id) {
    absl::StrAppend(&vocab, processor.IdToPiece(id), "\t", processor.GetScore(id), "\n");
  }
  RS_RETURN_IF_ERROR(
      internal::WriteFileContents(absl::StrCat(dir, "/tokenizer.model"), model_proto));
  return internal::WriteFileContents(absl::StrCat(dir, "/tokenizer.vocab"), vocab);
}

}  // namespace rackserve::model
