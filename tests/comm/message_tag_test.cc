// The UCX message tags: kinds, phases, sequence numbers and ranks never collide.
#include "runtime/comm/internal/message_tag.h"

#include <gtest/gtest.h>

#include <set>

namespace rackserve::comm::internal {
namespace {

TEST(MessageTagTest, KindsPhasesSequencesAndRanksAreDistinct) {
  std::set<uint64_t> tags;
  size_t made = 0;
  for (uint64_t seq : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{1} << 30}) {
    for (int rank : {0, 1, 7, 4095}) {
      tags.insert(PointToPointTag(seq, rank));
      for (int phase : {0, 1, 2}) tags.insert(CollectiveTag(seq, phase, rank));
      made += 4;
    }
  }
  for (int rank : {0, 1, 7, 4095}) {
    tags.insert(ControlTag(rank));
    ++made;
  }
  EXPECT_EQ(tags.size(), made);
}

TEST(MessageTagTest, FieldsSitWhereDocumented) {
  EXPECT_EQ(PointToPointTag(3, 5), (uint64_t{3} << 16) | 5);
  EXPECT_EQ(CollectiveTag(3, 2, 5), (uint64_t{1} << 62) | (uint64_t{3} << 24) | (2 << 16) | 5);
  EXPECT_EQ(ControlTag(5), (uint64_t{2} << 62) | 5);
  // Sequence numbers wrap inside their field instead of spilling into the kind.
  EXPECT_EQ(PointToPointTag(uint64_t{1} << 46, 5), PointToPointTag(0, 5));
  EXPECT_EQ(CollectiveTag(uint64_t{1} << 38, 0, 5), CollectiveTag(0, 0, 5));
}

}  // namespace
}  // namespace rackserve::comm::internal
