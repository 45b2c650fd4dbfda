// The 64-bit UCX tags the UCX communicator puts on its messages, matched exactly (full mask).
//
//   bits 62-63  kind: 0 point-to-point, 1 collective, 2 control (failure notices)
//   p2p:        bits 16-61 the pair's message number (sender -> receiver, counted on both sides)
//   collective: bits 24-61 the group's collective number, bits 16-23 the phase within it
//   bits 0-15   the sender's rank
//
// So a collective's messages never match a point-to-point message, two phases of one
// collective never match each other, and messages between a pair are matched in send order.
// Sequence numbers wrap (only a few messages per pair are ever in flight).
#pragma once

#include <cstdint>

namespace rackserve::comm::internal {

inline constexpr int kTagRankBits = 16;
inline constexpr int kTagPhaseBits = 8;
inline constexpr int kTagKindShift = 62;
inline constexpr uint64_t kTagFullMask = ~uint64_t{0};

enum class TagKind : uint64_t { kPointToPoint = 0, kCollective = 1, kControl = 2 };

inline constexpr uint64_t Bits(uint64_t value, int width) {
  return value & ((uint64_t{1} << width) - 1);
}

inline constexpr uint64_t PointToPointTag(uint64_t seq, int src_rank) {
  return (static_cast<uint64_t>(TagKind::kPointToPoint) << kTagKindShift) |
         (Bits(seq, kTagKindShift - kTagRankBits) << kTagRankBits) |
         Bits(static_cast<uint64_t>(src_rank), kTagRankBits);
}

inline constexpr uint64_t CollectiveTag(uint64_t seq, int phase, int src_rank) {
  constexpr int kSeqShift = kTagRankBits + kTagPhaseBits;
  return (static_cast<uint64_t>(TagKind::kCollective) << kTagKindShift) |
         (Bits(seq, kTagKindShift - kSeqShift) << kSeqShift) |
         (Bits(static_cast<uint64_t>(phase), kTagPhaseBits) << kTagRankBits) |
         Bits(static_cast<uint64_t>(src_rank), kTagRankBits);
}

inline constexpr uint64_t ControlTag(int src_rank) {
  return (static_cast<uint64_t>(TagKind::kControl) << kTagKindShift) |
         Bits(static_cast<uint64_t>(src_rank), kTagRankBits);
}

}  // namespace rackserve::comm::internal
