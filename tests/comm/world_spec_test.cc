// WorldSpec validation and the field-by-field agreement check the rendezvous relies on.
#include "runtime/comm/world_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace rackserve::comm {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

WorldSpec Spec() {
  WorldSpec w;
  w.size = 4;
  w.layout = "tp2-pp2";
  w.model = "llama-7b@abc123";
  return w;
}

TEST(WorldSpecTest, ValidatesSizeAndRank) {
  EXPECT_TRUE(Spec().Validate().ok());
  for (int size : {0, -1, WorldSpec::kMaxSize + 1}) {
    WorldSpec w = Spec();
    w.size = size;
    const absl::Status s = w.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), AllOf(HasSubstr("size"), HasSubstr(std::to_string(size))));
  }
  EXPECT_TRUE(Spec().ValidateRank(3).ok());
  for (int rank : {-1, 4}) {
    const absl::Status s = Spec().ValidateRank(rank);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("rank ", rank)));
  }
}

TEST(WorldSpecTest, SameWorldPasses) { EXPECT_TRUE(CheckSameWorld(Spec(), 0, Spec(), 3).ok()); }

TEST(WorldSpecTest, EachDifferingFieldIsNamedWithBothValues) {
  struct Case {
    std::string field;
    void (*change)(WorldSpec&);
    std::string mine, theirs;
  };
  const Case cases[] = {
      {"size", [](WorldSpec& w) { w.size = 8; }, "4", "8"},
      {"layout", [](WorldSpec& w) { w.layout = "tp4"; }, "tp2-pp2", "tp4"},
      {"model", [](WorldSpec& w) { w.model = "llama-70b"; }, "llama-7b@abc123", "llama-70b"},
      {"protocol_version", [](WorldSpec& w) { w.protocol_version = 2; }, "1", "2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    WorldSpec theirs = Spec();
    c.change(theirs);
    const absl::Status s = CheckSameWorld(Spec(), 0, theirs, 2);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(s.message(),
                AllOf(HasSubstr(c.field), HasSubstr("'" + c.mine + "'"),
                      HasSubstr("'" + c.theirs + "'"), HasSubstr("rank 2"), HasSubstr("rank 0")));
  }
}

}  // namespace
}  // namespace rackserve::comm
