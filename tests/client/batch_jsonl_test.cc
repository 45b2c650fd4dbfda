#include "client/batch_jsonl.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rackserve::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BatchJsonlTest, ParsesRequestsAndSkipsEmptyLines) {
  auto requests = ParseRequestsJsonl(
      R"({"id": "a", "prompt_ids": [1, 2, 3], "max_new_tokens": 8, "ignore_eos": true}

{"prompt": "hello", "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 5, "stop_token_ids": [2]}
)",
      "in.jsonl");
  ASSERT_TRUE(requests.ok()) << requests.status();
  ASSERT_EQ(requests->size(), 2u);
  EXPECT_EQ((*requests)[0].id, "a");
  EXPECT_THAT((*requests)[0].prompt_ids, ElementsAre(1, 2, 3));
  EXPECT_EQ((*requests)[0].max_new_tokens, 8);
  EXPECT_TRUE((*requests)[0].ignore_eos);
  EXPECT_EQ((*requests)[1].id, "line3");
  EXPECT_EQ((*requests)[1].prompt, "hello");
  EXPECT_FLOAT_EQ((*requests)[1].temperature, 0.7f);
  EXPECT_EQ((*requests)[1].top_k, 40);
  EXPECT_EQ((*requests)[1].seed, 5u);
  EXPECT_THAT((*requests)[1].stop_token_ids, ElementsAre(2));
}

TEST(BatchJsonlTest, ErrorsNameLineAndField) {
  const std::pair<std::string, std::string> cases[] = {
      {"{\"prompt_ids\": [1]}\n{\"prompt_ids\": [1], \"max_new_tokens\": 0}\n",
       "in.jsonl:2: max_new_tokens: 0 is outside [1,"},
      {"{\"prompt_ids\": [1, \"x\"]}\n", "in.jsonl:1: prompt_ids[1]: must be an integer"},
      {"{\"prompt_ids\": [1]\n", "in.jsonl:1: (line): not valid JSON"},
      {"[1, 2]\n", "in.jsonl:1: (line): must be a JSON object"},
      {"{\"max_new_tokens\": 3}\n", "in.jsonl:1: prompt: missing"},
      {"{\"prompt\": \"a\", \"prompt_ids\": [1]}\n", "give prompt or prompt_ids, not both"},
      {"{\"prompt\": \"a\", \"temprature\": 1}\n", "in.jsonl:1: temprature: unknown field"},
      {"{\"prompt\": \"a\", \"top_p\": 1.5}\n", "in.jsonl:1: top_p: 1.5 is outside"},
      {"{\"prompt\": \"a\", \"ignore_eos\": 1}\n", "in.jsonl:1: ignore_eos: must be true or false"},
      {"{\"id\": \"q\", \"prompt\": \"a\"}\n\n{\"id\": \"q\", \"prompt\": \"b\"}\n",
       "in.jsonl:3: id: duplicate \"q\" (first on line 1)"},
  };
  for (const auto& [text, expected] : cases) {
    auto requests = ParseRequestsJsonl(text, "in.jsonl");
    ASSERT_FALSE(requests.ok()) << text;
    EXPECT_EQ(requests.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(requests.status().message()), HasSubstr(expected)) << text;
  }
}

TEST(BatchJsonlTest, ResultLineRoundTripsThroughJson) {
  RequestResult r;
  r.id = "a";
  r.token_ids = {5, 6};
  r.has_text = true;
  r.text = "hi";
  r.finish_reason = "max_tokens";
  r.prompt_tokens = 3;
  r.ttft_seconds = 0.25;
  const auto line = nlohmann::json::parse(ResultJsonLine(r));
  EXPECT_EQ(line["id"], "a");
  EXPECT_EQ(line["token_ids"], nlohmann::json({5, 6}));
  EXPECT_EQ(line["text"], "hi");
  EXPECT_EQ(line["finish_reason"], "max_tokens");
  EXPECT_DOUBLE_EQ(line["timings"]["ttft_s"].get<double>(), 0.25);
  EXPECT_TRUE(line["error"].is_null());
  r.has_text = false;
  r.error = "UNAVAILABLE: gone";
  const auto failed = nlohmann::json::parse(ResultJsonLine(r));
  EXPECT_FALSE(failed.contains("text"));
  EXPECT_EQ(failed["error"], "UNAVAILABLE: gone");
}

}  // namespace
}  // namespace rackserve::client
