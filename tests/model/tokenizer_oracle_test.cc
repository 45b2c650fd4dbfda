// Tokenizer (our SentencePiece reader and BPE encoder) against libsentencepiece itself, through
// the bridge, on trained and hand-built models: ids, decoded text, special ids, load errors.
// This binary must not link libprotobuf (libsentencepiece carries its own protobuf-lite).
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/internal/sentencepiece_bridge.h"
#include "runtime/model/tokenizer.h"
#include "runtime/model/tokenizer_trainer.h"

namespace rackserve::model {
namespace {

using ::testing::HasSubstr;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string TempDir(const std::string& name) {
  const std::string dir =
      (std::filesystem::path(::testing::TempDir()) / (name + "_" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  return dir;
}

// Random text mixing what tokenizers find hard: corpus words, ASCII, digit runs, whitespace
// runs, multi-byte characters (2, 3 and 4 bytes), bytes that are not UTF-8, and strings that
// look like special pieces.
std::string RandomText(std::mt19937& rng, const std::vector<std::string>& words) {
  static const std::vector<std::string> kOdd = {"\xc3\xa9",
                                                "\xc3\x9f",
                                                "\xd0\x96",
                                                "\xe6\x97\xa5",
                                                "\xe2\x96\x81",
                                                "\xef\xbf\xbd",
                                                "\xf0\x9f\x99\x82",
                                                "\xf0\x9f\x8d\x95",
                                                "<s>",
                                                "</s>",
                                                "<unk>",
                                                "<0x41>",
                                                "\t",
                                                "\n",
                                                "\r\n",
                                                "\x01",
                                                "\x7f",
                                                "\xff",
                                                "\x80",
                                                "\xc3",
                                                "\xe6\x97",
                                                "\xed\xa0\x80",
                                                "\xc0\xaf",
                                                "\xf4\x90\x80\x80"};
  std::string text;
  const int parts = static_cast<int>(rng() % 12);
  for (int p = 0; p < parts; ++p) {
    switch (rng() % 7) {
      case 0:
      case 1: {
        const std::string& sentence = words[rng() % words.size()];
        const size_t begin = rng() % (sentence.size() + 1);
        text += sentence.substr(begin, rng() % 40);
        break;
      }
      case 2:
        for (int i = static_cast<int>(rng() % 8); i > 0; --i) {
          text += static_cast<char>(0x20 + rng() % 95);
        }
        break;
      case 3:
        for (int i = static_cast<int>(rng() % 9); i > 0; --i) {
          text += static_cast<char>('0' + rng() % 10);
        }
        break;
      case 4:
        text += std::string(rng() % 5, ' ');
        break;
      case 5:
        text += kOdd[rng() % kOdd.size()];
        break;
      default:
        text += static_cast<char>(rng() % 256);
        break;
    }
  }
  return text;
}

// Ours and libsentencepiece's view of the same model file.
struct Pair {
  std::unique_ptr<Tokenizer> ours;
  internal::SpmProcessor oracle;
};

void LoadPair(const std::string& path, Pair* pair) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> ours = Tokenizer::Load(path);
  ASSERT_TRUE(ours.ok()) << ours.status();
  pair->ours = *std::move(ours);
  const internal::SpmStatus loaded = pair->oracle.LoadFromSerialized(ReadBytes(path));
  ASSERT_TRUE(loaded.ok()) << loaded.message;
}

// Compares encoding of `texts`, decoding of the encodings and decoding of random id sequences.
void ExpectSameAsOracle(Pair& pair, const std::vector<std::string>& texts, uint32_t seed) {
  ASSERT_EQ(pair.ours->vocab_size(), pair.oracle.piece_size());
  EXPECT_EQ(pair.ours->bos_id(), pair.oracle.bos_id());
  EXPECT_EQ(pair.ours->eos_id(), pair.oracle.eos_id());
  int mismatches = 0;
  for (const std::string& text : texts) {
    std::vector<int> expected;
    ASSERT_TRUE(pair.oracle.Encode(text, &expected).ok());
    absl::StatusOr<std::vector<int32_t>> ids = pair.ours->Encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (std::vector<int>(ids->begin(), ids->end()) != expected && ++mismatches <= 5) {
      ADD_FAILURE() << "encode mismatch for \"" << text << "\": ours "
                    << ::testing::PrintToString(*ids) << " libsentencepiece "
                    << ::testing::PrintToString(expected);
    }
    std::string expected_text;
    ASSERT_TRUE(pair.oracle.Decode(expected, &expected_text).ok());
    absl::StatusOr<std::string> decoded = pair.ours->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    if (*decoded != expected_text && ++mismatches <= 5) {
      ADD_FAILURE() << "decode mismatch for \"" << text << "\": ours \"" << *decoded
                    << "\" libsentencepiece \"" << expected_text << "\"";
    }
  }
  std::mt19937 rng(seed);
  for (int i = 0; i < 500; ++i) {
    std::vector<int> ids(rng() % 12);
    for (int& id : ids) id = static_cast<int>(rng() % pair.oracle.piece_size());
    std::string expected_text;
    ASSERT_TRUE(pair.oracle.Decode(ids, &expected_text).ok());
    absl::StatusOr<std::string> decoded =
        pair.ours->Decode(std::vector<int32_t>(ids.begin(), ids.end()));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    if (*decoded != expected_text && ++mismatches <= 5) {
      ADD_FAILURE() << "decode mismatch for ids " << ::testing::PrintToString(ids) << ": ours \""
                    << *decoded << "\" libsentencepiece \"" << expected_text << "\"";
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool IsValidUtf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<uint8_t>(text[i]);
    size_t length = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if (lead < 0x80) {
      length = 1;
      cp = lead;
    } else if ((lead >> 5) == 6) {
      length = 2;
      cp = lead & 0x1F;
      min = 0x80;
    } else if ((lead >> 4) == 14) {
      length = 3;
      cp = lead & 0x0F;
      min = 0x800;
    } else if ((lead >> 3) == 30) {
      length = 4;
      cp = lead & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto trail = static_cast<uint8_t>(text[i + k]);
      if ((trail & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (trail & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

class TrainedOracleTest : public ::testing::TestWithParam<int> {};

TEST_P(TrainedOracleTest, EncodesAndDecodesLikeLibSentencePiece) {
  const std::string dir = TempDir("tokenizer_oracle_" + std::to_string(GetParam()));
  ASSERT_TRUE(TrainTokenizer(dir, GetParam()).ok());
  Pair pair;
  LoadPair(dir + "/tokenizer.model", &pair);
  if (HasFatalFailure()) return;
  std::mt19937 rng(1234 + GetParam());
  std::vector<std::string> texts = TokenizerTrainingCorpus();
  for (int i = 0; i < 3000; ++i) texts.push_back(RandomText(rng, TokenizerTrainingCorpus()));
  ExpectSameAsOracle(pair, texts, 99 + GetParam());
  // Byte fallback and no normalization: valid UTF-8 round-trips exactly (but for U+2581, which
  // stands for a space).
  for (const std::string& text : texts) {
    if (!IsValidUtf8(text) || text.find("\xe2\x96\x81") != std::string::npos) continue;
    absl::StatusOr<std::vector<int32_t>> ids = pair.ours->Encode(text, true);
    ASSERT_TRUE(ids.ok());
    absl::StatusOr<std::string> back = pair.ours->Decode(*ids);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text);
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(VocabSizes, TrainedOracleTest, ::testing::Values(512, 2000, 32000));

// CPU seconds of this process (the machine may be shared, so wall time says little).
double CpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// A long text: the same ids as libsentencepiece, in no more than twice its CPU time (relative, so
// a slower machine does not fail it; the absolute rate is printed for bench/RESULTS.md).
TEST(TokenizerSpeedTest, LongTextMatchesOracleAndKeepsPace) {
  const std::string dir = TempDir("tokenizer_speed");
  ASSERT_TRUE(TrainTokenizer(dir, 2000).ok());
  Pair pair;
  LoadPair(dir + "/tokenizer.model", &pair);
  if (HasFatalFailure()) return;
  std::string text;
  while (text.size() < (1 << 18)) {
    for (const std::string& sentence : TokenizerTrainingCorpus()) text += sentence + "\n";
  }
  const double start = CpuSeconds();
  absl::StatusOr<std::vector<int32_t>> ids = pair.ours->Encode(text, false);
  const double ours_s = CpuSeconds() - start;
  ASSERT_TRUE(ids.ok());
  const double oracle_start = CpuSeconds();
  std::vector<int> expected;
  ASSERT_TRUE(pair.oracle.Encode(text, &expected).ok());
  const double oracle_s = CpuSeconds() - oracle_start;
  EXPECT_EQ(std::vector<int>(ids->begin(), ids->end()), expected);
  const double tokens_per_s = static_cast<double>(ids->size()) / ours_s;
  std::printf(
      "encode %zu bytes -> %zu tokens in %.3f CPU s: %.0f tokens/s "
      "(libsentencepiece: %.3f CPU s, %.0f tokens/s)\n",
      text.size(), ids->size(), ours_s, tokens_per_s, oracle_s,
      static_cast<double>(expected.size()) / oracle_s);
  EXPECT_LT(ours_s, 2 * oracle_s + 0.05);
  std::filesystem::remove_all(dir);
}

// A hand-written ModelProto, serialized with the protobuf wire format.
class ModelWriter {
 public:
  struct Piece {
    std::string text;
    float score;
    int type;  // 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE
  };
  static std::string Varint(uint64_t value) {
    std::string out;
    do {
      out += static_cast<char>((value & 0x7f) | (value > 0x7f ? 0x80 : 0));
      value >>= 7;
    } while (value != 0);
    return out;
  }
  static std::string Tag(int field, int wire_type) { return Varint(field << 3 | wire_type); }
  static std::string Bytes(int field, const std::string& bytes) {
    return Tag(field, 2) + Varint(bytes.size()) + bytes;
  }
  static std::string Int(int field, int64_t value) {
    return Tag(field, 0) + Varint(static_cast<uint64_t>(value));
  }
  static std::string Float(int field, float value) {
    std::string out = Tag(field, 5);
    out.append(reinterpret_cast<const char*>(&value), sizeof(value));
    return out;
  }
  static std::string Model(const std::vector<Piece>& pieces, const std::string& trainer,
                           const std::string& normalizer) {
    std::string out;
    for (const Piece& piece : pieces) {
      out += Bytes(1, Bytes(1, piece.text) + Float(2, piece.score) + Int(3, piece.type));
    }
    return out + Bytes(2, trainer) + Bytes(3, normalizer);
  }
};

// Pieces exercising merges with equal scores, UNUSED pieces (split back), USER_DEFINED pieces
// (never merged), CONTROL pieces and characters outside the vocabulary (runs of unknowns).
std::vector<ModelWriter::Piece> HandPieces() {
  const std::string space = "\xe2\x96\x81";  // U+2581
  return {{"<unk>", 0, 2},        {"<s>", 0, 3},        {"</s>", 0, 3},      {"<tag>", 0, 4},
          {"cc", 0, 4},           {space, -1, 1},       {"a", -2, 1},        {"b", -2, 1},
          {"c", -3, 1},           {"d", -3, 1},         {"\xc3\xa9", -4, 1}, {"ab", -5, 1},
          {"bc", -5, 1},          {"cd", -5, 1},        {"abc", -6, 1},      {space + "a", -5, 1},
          {space + space, -7, 1}, {"da", -4, 5},        {"dab", -4.5, 1},    {"bcd", -6, 5},
          {"abcd", -6.5, 1},      {space + "ab", -8, 1}};
}

std::string HandText(std::mt19937& rng) {
  static const std::vector<std::string> kParts = {
      "a",    "b",  "c",    "d",  " ", "  ", "<tag>", "cc", "\xc3\xa9", "x", "\xe6\x97\xa5",
      "\xff", "ab", "abcd", "dab"};
  std::string text;
  for (int i = static_cast<int>(rng() % 16); i > 0; --i) text += kParts[rng() % kParts.size()];
  return text;
}

struct HandOptions {
  bool add_dummy_prefix;
  bool remove_extra_whitespaces;
  bool byte_fallback;
};

void PrintTo(const HandOptions& options, std::ostream* os) {
  *os << "add_dummy_prefix=" << options.add_dummy_prefix
      << " remove_extra_whitespaces=" << options.remove_extra_whitespaces
      << " byte_fallback=" << options.byte_fallback;
}

class HandModelOracleTest : public ::testing::TestWithParam<HandOptions> {};

TEST_P(HandModelOracleTest, EncodesAndDecodesLikeLibSentencePiece) {
  const HandOptions options = GetParam();
  std::vector<ModelWriter::Piece> pieces = HandPieces();
  std::string trainer = ModelWriter::Int(3, 2);  // BPE
  if (options.byte_fallback) {
    trainer += ModelWriter::Int(35, 1);
    for (int byte = 0; byte < 256; ++byte) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", byte);
      pieces.push_back({name, 0, 6});
    }
  }
  const std::string normalizer = ModelWriter::Bytes(1, "identity") +
                                 ModelWriter::Int(3, options.add_dummy_prefix) +
                                 ModelWriter::Int(4, options.remove_extra_whitespaces);
  const std::string dir = TempDir("tokenizer_hand");
  const std::string path = dir + "/hand.model";
  std::ofstream(path, std::ios::binary) << ModelWriter::Model(pieces, trainer, normalizer);
  Pair pair;
  LoadPair(path, &pair);
  if (HasFatalFailure()) return;
  std::mt19937 rng(7);
  std::vector<std::string> texts = {"", " ", "   ", "abcd", " abcd  dab ", "xx\xff y"};
  for (int i = 0; i < 3000; ++i) texts.push_back(HandText(rng));
  ExpectSameAsOracle(pair, texts, 11);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Normalizers, HandModelOracleTest,
    ::testing::Values(HandOptions{true, false, false}, HandOptions{false, false, false},
                      HandOptions{true, true, false}, HandOptions{false, true, false},
                      HandOptions{true, false, true}, HandOptions{false, true, true}));

absl::Status LoadBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return Tokenizer::Load(path).status();
}

TEST(TokenizerLoadTest, RefusesUnsupportedModels) {
  const std::string dir = TempDir("tokenizer_unsupported");
  const std::string identity = ModelWriter::Bytes(1, "identity");
  const std::string unigram = dir + "/unigram.model";
  absl::Status s = LoadBytes(unigram, ModelWriter::Model(HandPieces(), "", identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr(unigram));
  EXPECT_THAT(std::string(s.message()), HasSubstr("model_type UNIGRAM"));

  const std::string nfkc = dir + "/nfkc.model";
  s = LoadBytes(nfkc, ModelWriter::Model(
                          HandPieces(), ModelWriter::Int(3, 2),
                          ModelWriter::Bytes(1, "nmt_nfkc") + ModelWriter::Bytes(2, "charsmap")));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr(nfkc));
  EXPECT_THAT(std::string(s.message()), HasSubstr("normalizer \"nmt_nfkc\""));

  const std::string suffix = dir + "/suffix.model";
  s = LoadBytes(
      suffix,
      ModelWriter::Model(HandPieces(), ModelWriter::Int(3, 2) + ModelWriter::Int(24, 1), identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr("treat_whitespace_as_suffix"));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerLoadTest, RefusesInvalidModels) {
  const std::string dir = TempDir("tokenizer_invalid");
  const std::string bpe = ModelWriter::Int(3, 2);
  const std::string identity = ModelWriter::Bytes(1, "identity");
  std::vector<ModelWriter::Piece> no_unk = HandPieces();
  no_unk[0].type = 1;
  const std::string path = dir + "/bad.model";
  absl::Status s = LoadBytes(path, ModelWriter::Model(no_unk, bpe, identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("UNKNOWN"));

  std::vector<ModelWriter::Piece> duplicate = HandPieces();
  duplicate.push_back({"abc", -9, 1});
  s = LoadBytes(path, ModelWriter::Model(duplicate, bpe, identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"abc\" repeats piece 14"));

  std::vector<ModelWriter::Piece> bad_type = HandPieces();
  bad_type[6].type = 9;
  s = LoadBytes(path, ModelWriter::Model(bad_type, bpe, identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ModelProto.pieces[6].type is 9"));

  std::vector<ModelWriter::Piece> bytes = HandPieces();
  bytes.push_back({"<0x41>", 0, 6});
  s = LoadBytes(path, ModelWriter::Model(bytes, bpe, identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("byte_fallback is false"));
  s = LoadBytes(path, ModelWriter::Model(bytes, bpe + ModelWriter::Int(35, 1), identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no BYTE piece <0x00>"));

  s = LoadBytes(path, ModelWriter::Bytes(3, identity));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no trainer_spec"));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerLoadTest, ReportsCorruptWireFormatWithTheOffset) {
  const std::string dir = TempDir("tokenizer_corrupt");
  const std::string path = dir + "/corrupt.model";
  const std::string good =
      ModelWriter::Model(HandPieces(), ModelWriter::Int(3, 2), ModelWriter::Bytes(1, "identity"));
  // model_type as a string instead of a varint.
  const std::string wrong_type = ModelWriter::Model(HandPieces(), ModelWriter::Bytes(3, "bpe"),
                                                    ModelWriter::Bytes(1, "identity"));
  absl::Status s = LoadBytes(path, wrong_type);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("ModelProto.trainer_spec.model_type"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("byte offset"));

  s = LoadBytes(path, good + "\x0a\x7f");  // a piece whose length runs past the end
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("byte offset " + std::to_string(good.size()) + ": field 1: length 127"));

  s = LoadBytes(path, good + "\x0b");  // group wire type
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("unsupported wire type 3"));

  s = LoadBytes(path, good + "\x08\xff\xff");  // truncated varint
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("truncated varint"));

  // Every truncation of a real model fails cleanly.
  const std::string trained = TempDir("tokenizer_truncated");
  ASSERT_TRUE(TrainTokenizer(trained, 512).ok());
  const std::string bytes = ReadBytes(trained + "/tokenizer.model");
  for (size_t size = 0; size < bytes.size(); size += bytes.size() / 150 + 1) {
    s = LoadBytes(path, bytes.substr(0, size));
    EXPECT_TRUE(s.code() == absl::StatusCode::kDataLoss ||
                s.code() == absl::StatusCode::kInvalidArgument)
        << size << ": " << s;
  }
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(trained);
}

}  // namespace
}  // namespace rackserve::model
