#include "kernels/cpu/embedding_gather.h"

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using reference_check::Poisoned;
using reference_check::RandomFloats;
using reference_check::SeededRng;
using ::testing::HasSubstr;

TEST(EmbeddingGatherTest, CopiesTheRowsOfTheIds) {
  auto rng = SeededRng();
  for (const auto& [vocab, hidden, tokens] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {50, 7, 9}, {1000, 64, 33}}) {
    const std::vector<float> table = RandomFloats(rng, vocab * hidden);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> ids(tokens);
    for (int32_t& i : ids) i = id(rng);
    ids[0] = static_cast<int32_t>(vocab - 1);
    std::vector<float> out = Poisoned(tokens * hidden);
    ASSERT_TRUE(EmbeddingGather(table.data(), vocab, hidden, ids.data(), tokens, out.data()).ok());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t j = 0; j < hidden; ++j) {
        ASSERT_EQ(out[t * hidden + j], table[ids[t] * hidden + j]) << "token " << t;
      }
    }
  }
}

TEST(EmbeddingGatherTest, NoTokensIsANoOp) {
  const float table[2] = {1.0f, 2.0f};
  EXPECT_TRUE(EmbeddingGather(table, 2, 1, nullptr, 0, nullptr).ok());
}

TEST(EmbeddingGatherTest, RejectsIdsOutsideTheVocabulary) {
  const std::vector<float> table(4 * 3, 1.0f);
  for (int32_t bad : {4, -1, 1 << 30}) {
    const std::vector<int32_t> ids = {0, 3, bad, 1};
    std::vector<float> out = Poisoned(4 * 3);
    const absl::Status s = EmbeddingGather(table.data(), 4, 3, ids.data(), 4, out.data());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("token 2 has id ", bad)));
    EXPECT_THAT(s.message(), HasSubstr("[0, 4)"));
    EXPECT_TRUE(std::isnan(out[0])) << "a rejected call wrote to out";
  }
}

TEST(EmbeddingGatherTest, RejectsBadArguments) {
  std::vector<float> buffer(32, 1.0f);
  const float* table = buffer.data();  // [4, 2]
  float* out = buffer.data() + 16;     // [2, 2]
  const int32_t ids[2] = {0, 1};
  struct Case {
    absl::Status status;
    const char* culprit;
  };
  const Case cases[] = {
      {EmbeddingGather(table, 0, 2, ids, 2, out), "argument vocab must be > 0, got 0"},
      {EmbeddingGather(table, 4, -2, ids, 2, out), "argument hidden must be > 0, got -2"},
      {EmbeddingGather(table, 4, 2, ids, -1, out), "argument tokens must be >= 0, got -1"},
      {EmbeddingGather(nullptr, 4, 2, ids, 2, out), "argument table is null"},
      {EmbeddingGather(table, 4, 2, nullptr, 2, out), "argument ids is null"},
      {EmbeddingGather(table, 4, 2, ids, 2, nullptr), "argument out is null"},
      {EmbeddingGather(table, 4, 2, ids, 2, buffer.data() + 6),
       "argument out overlaps argument table"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
  }
}

}  // namespace
}  // namespace rackserve::kernels::cpu
