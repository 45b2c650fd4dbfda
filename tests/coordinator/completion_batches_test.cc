#include "coordinator/completion_batches.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace rackserve::coordinator {
namespace {

v1::Completion CompletionWith(int index, int tokens) {
  v1::Completion completion;
  completion.set_request_id(absl::StrCat("c", index));
  for (int t = 0; t < tokens; ++t) completion.add_token_ids(1000 + t);
  return completion;
}

// Every completion once, in order, across the messages.
void ExpectInOrder(const std::vector<v1::CompletionBatch>& batches, int count) {
  int next = 0;
  for (const v1::CompletionBatch& batch : batches) {
    for (const v1::Completion& completion : batch.completions()) {
      EXPECT_EQ(completion.request_id(), absl::StrCat("c", next++));
    }
  }
  EXPECT_EQ(next, count);
}

TEST(PackCompletionsTest, SmallCompletionsShareOneMessage) {
  std::deque<v1::Completion> ready;
  for (int i = 0; i < 50; ++i) ready.push_back(CompletionWith(i, 10));
  const std::vector<v1::CompletionBatch> batches = PackCompletions(ready, size_t{1} << 20);
  ASSERT_EQ(batches.size(), 1u);
  ExpectInOrder(batches, 50);
}

// ~3 MB of completions under a 1 MiB cap: at least three messages, none over the cap.
TEST(PackCompletionsTest, ALargeBacklogSplitsUnderTheCap) {
  constexpr size_t kCap = size_t{1} << 20;
  std::deque<v1::Completion> ready;
  size_t total = 0;
  for (int i = 0; total < 3 * kCap; ++i) {
    ready.push_back(CompletionWith(i, 3000 + i % 7));
    total += ready.back().ByteSizeLong();
  }
  const int count = static_cast<int>(ready.size());
  const std::vector<v1::CompletionBatch> batches = PackCompletions(ready, kCap);
  EXPECT_GE(batches.size(), 3u);
  size_t packed = 0;
  for (const v1::CompletionBatch& batch : batches) {
    size_t bytes = 0;
    for (const v1::Completion& completion : batch.completions()) bytes += completion.ByteSizeLong();
    EXPECT_LE(bytes, kCap);
    EXPECT_GT(batch.completions_size(), 0);
    packed += bytes;
  }
  EXPECT_EQ(packed, total);
  ExpectInOrder(batches, count);
}

// A completion over the cap is not dropped or split: it travels alone.
TEST(PackCompletionsTest, ACompletionOverTheCapTravelsAlone) {
  std::deque<v1::Completion> ready = {CompletionWith(0, 4), CompletionWith(1, 2000),
                                      CompletionWith(2, 4)};
  const std::vector<v1::CompletionBatch> batches = PackCompletions(ready, 1000);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1].completions_size(), 1);
  ExpectInOrder(batches, 3);
  EXPECT_TRUE(PackCompletions({}, 1000).empty());
}

}  // namespace
}  // namespace rackserve::coordinator
