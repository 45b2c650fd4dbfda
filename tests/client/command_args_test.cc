#include "client/command_args.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CommandArgsTest, ValuesSwitchesAndPositionals) {
  auto args = CommandArgs::Parse({"vm03", "--max_new_tokens=7", "--top-p", "0.5", "--resume"},
                                 {"max-new-tokens", "top-p"}, {"resume"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(args->positional(), ElementsAre("vm03"));
  EXPECT_TRUE(args->Has("resume"));
  EXPECT_EQ(*args->Int("max-new-tokens", 1, 1, 100), 7);
  EXPECT_DOUBLE_EQ(*args->Double("top-p", 1, 0, 1), 0.5);
  EXPECT_EQ(*args->Int("absent", 42, 0, 100), 42);
}

TEST(CommandArgsTest, ErrorsNameTheFlagAndValue) {
  auto unknown = CommandArgs::Parse({"--qsp", "3"}, {"qps"}, {});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("unknown flag --qsp"));

  auto no_value = CommandArgs::Parse({"--qps"}, {"qps"}, {});
  EXPECT_EQ(no_value.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_value.status().message()), HasSubstr("--qps needs a value"));

  auto args = CommandArgs::Parse({"--count", "x", "--qps", "-1", "--ids", "1,b"},
                                 {"count", "qps", "ids"}, {});
  ASSERT_TRUE(args.ok());
  auto count = args->Int("count", 1, 1, 10);
  EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(count.status().message()), HasSubstr("--count: not an integer: \"x\""));
  auto qps = args->Double("qps", 1, 0, 10);
  EXPECT_EQ(qps.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(qps.status().message()), HasSubstr("--qps: -1 is outside"));
  auto ids = args->IntList("ids");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ids.status().message()), HasSubstr("--ids: not an integer: \"b\""));
}

TEST(CommandArgsTest, IdLists) {
  auto args = CommandArgs::Parse({"--ids", "1, 2,3 4"}, {"ids"}, {});
  ASSERT_TRUE(args.ok());
  EXPECT_THAT(*args->IntList("ids"), ElementsAre(1, 2, 3, 4));
}

}  // namespace
}  // namespace rackserve::client
