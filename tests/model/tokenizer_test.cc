#include "runtime/model/tokenizer.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/tokenizer_trainer.h"

namespace rackserve::model {
namespace {

using ::testing::HasSubstr;

constexpr int kVocabSize = 512;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Trains one tokenizer for the whole suite.
class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string((std::filesystem::path(::testing::TempDir()) /
                             ("tokenizer_test_" + std::to_string(getpid())))
                                .string());
    std::filesystem::create_directories(*root_ + "/a");
    const auto start = std::chrono::steady_clock::now();
    train_status_ = new absl::Status(TrainTokenizer(*root_ + "/a", kVocabSize));
    train_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (train_status_->ok()) {
      auto loaded = Tokenizer::Load(*root_ + "/a/tokenizer.model");
      if (loaded.ok()) {
        tokenizer_ = loaded->release();
      } else {
        *train_status_ = loaded.status();
      }
    }
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*root_);
    delete tokenizer_;
    delete train_status_;
    delete root_;
  }
  void SetUp() override { ASSERT_TRUE(train_status_->ok()) << *train_status_; }

  static std::vector<int32_t> Encode(std::string_view text, bool add_bos) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, add_bos);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>();
  }
  static std::string Decode(const std::vector<int32_t>& ids) {
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : std::string();
  }

  static std::string* root_;
  static absl::Status* train_status_;
  static double train_seconds_;
  static Tokenizer* tokenizer_;
};

std::string* TokenizerTest::root_ = nullptr;
absl::Status* TokenizerTest::train_status_ = nullptr;
double TokenizerTest::train_seconds_ = 0.0;
Tokenizer* TokenizerTest::tokenizer_ = nullptr;

TEST_F(TokenizerTest, TrainsQuicklyWithLlamaSpecialIds) {
  EXPECT_LT(train_seconds_, 5.0);
  EXPECT_LE(tokenizer_->vocab_size(), kVocabSize);
  EXPECT_GT(tokenizer_->vocab_size(), MinTokenizerVocabSize());
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_EQ(tokenizer_->eos_id(), 2);
  // tokenizer.vocab: one "piece<TAB>score" line per id.
  std::istringstream vocab(ReadBytes(*root_ + "/a/tokenizer.vocab"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(vocab, line);) lines.push_back(line);
  ASSERT_EQ(static_cast<int>(lines.size()), tokenizer_->vocab_size());
  EXPECT_EQ(lines[0], "<unk>\t0");
  EXPECT_EQ(lines[1], "<s>\t0");
  EXPECT_EQ(lines[2], "</s>\t0");
}

TEST_F(TokenizerTest, RoundTripsText) {
  for (std::string_view text :
       {"The quick brown fox", "The quick brown fox jumps over the lazy dog.",
        "Hello, world! 1234567890", "  two leading spaces and  a double gap ", "tab\tnew\nline",
        "na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82", ""}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(Decode(Encode(text, false)), text);
    EXPECT_EQ(Decode(Encode(text, true)), text);
  }
}

TEST_F(TokenizerTest, LearnsMergesFromTheCorpus) {
  const std::vector<int32_t> ids = Encode("The quick brown fox", false);
  EXPECT_LE(ids.size(), 6u);  // whole words, not characters
  for (int32_t id : ids) {
    EXPECT_GT(id, 2);
    EXPECT_LT(id, tokenizer_->vocab_size());
  }
}

TEST_F(TokenizerTest, AddsBosOnlyWhenAsked) {
  const std::vector<int32_t> plain = Encode("The quick brown fox", false);
  const std::vector<int32_t> with_bos = Encode("The quick brown fox", true);
  ASSERT_EQ(with_bos.size(), plain.size() + 1);
  EXPECT_EQ(with_bos[0], tokenizer_->bos_id());
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), plain);
  EXPECT_NE(plain.front(), tokenizer_->bos_id());
  EXPECT_NE(plain.back(), tokenizer_->eos_id());
  EXPECT_EQ(Encode("", true), std::vector<int32_t>{1});
  EXPECT_TRUE(Encode("", false).empty());
}

TEST_F(TokenizerTest, DecodeDropsControlTokens) {
  std::vector<int32_t> ids = Encode("The quick brown fox", true);
  ids.push_back(tokenizer_->eos_id());
  EXPECT_EQ(Decode(ids), "The quick brown fox");
}

TEST_F(TokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  const int32_t size = tokenizer_->vocab_size();
  for (const std::vector<int32_t>& ids :
       {std::vector<int32_t>{5, size}, std::vector<int32_t>{5, -1}}) {
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(text.status().message()),
                HasSubstr("token id " + std::to_string(ids[1])));
    EXPECT_THAT(std::string(text.status().message()), HasSubstr("position 1"));
  }
}

TEST_F(TokenizerTest, IsSafeToShareAcrossThreads) {
  const std::string text = TokenizerTrainingCorpus()[7];
  const std::vector<int32_t> expected = Encode(text, true);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text, true);
        absl::StatusOr<std::string> back = tokenizer_->Decode(expected);
        if (!ids.ok() || *ids != expected || !back.ok() || *back != text) ++mismatches[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  std::filesystem::create_directories(*root_ + "/b");
  ASSERT_TRUE(TrainTokenizer(*root_ + "/b", kVocabSize).ok());
  EXPECT_EQ(ReadBytes(*root_ + "/a/tokenizer.model"), ReadBytes(*root_ + "/b/tokenizer.model"));
}

TEST_F(TokenizerTest, LargeVocabularyRequestsYieldWhatTheCorpusSupports) {
  std::filesystem::create_directories(*root_ + "/large");
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(TrainTokenizer(*root_ + "/large", 128256).ok());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  absl::StatusOr<std::unique_ptr<Tokenizer>> large =
      Tokenizer::Load(*root_ + "/large/tokenizer.model");
  ASSERT_TRUE(large.ok()) << large.status();
  EXPECT_LE((*large)->vocab_size(), 128256);
  EXPECT_GE((*large)->vocab_size(), tokenizer_->vocab_size());
}

TEST_F(TokenizerTest, TrainRejectsBadArguments) {
  absl::Status s = TrainTokenizer(*root_ + "/a", MinTokenizerVocabSize() - 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("vocab_size"));

  const std::string missing = *root_ + "/absent";
  s = TrainTokenizer(missing, kVocabSize);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr(missing));
}

TEST_F(TokenizerTest, LoadReportsMissingAndCorruptFiles) {
  const std::string missing = *root_ + "/absent.model";
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load(missing);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(missing));

  const std::string corrupt = *root_ + "/corrupt.model";
  std::ofstream(corrupt) << "this is not a protobuf";
  t = Tokenizer::Load(corrupt);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(corrupt));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("byte offset 0"));

  const std::string truncated = *root_ + "/truncated.model";
  const std::string bytes = ReadBytes(*root_ + "/a/tokenizer.model");
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  t = Tokenizer::Load(truncated);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(truncated));
}

TEST(TokenizerCorpusTest, IsDeterministicEnglishText) {
  const std::vector<std::string>& corpus = TokenizerTrainingCorpus();
  EXPECT_GE(corpus.size(), 300u);
  EXPECT_EQ(corpus[0], "The quick brown fox jumps over the lazy dog.");
  for (const std::string& sentence : corpus) {
    for (char ch : sentence) EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << sentence;
  }
  EXPECT_GT(MinTokenizerVocabSize(), 259);
  EXPECT_LT(MinTokenizerVocabSize(), 512);  // the "tiny" model preset's vocabulary
}

}  // namespace
}  // namespace rackserve::model
