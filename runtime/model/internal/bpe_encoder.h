// BpeEncoder: SentencePiece's BPE segmentation of normalized text, and its piece -> id lookup,
// reimplemented so that tokenizing needs no libsentencepiece. The result is identical to
// sentencepiece::bpe::Model::Encode (src/bpe_model.cc):
//   - the text is split into UTF-8 characters, except that the longest USER_DEFINED piece
//     starting at a position is taken whole and never merged further;
//   - then, repeatedly, the adjacent pair whose concatenation is a NORMAL, USER_DEFINED or UNUSED
//     piece of the highest score is merged; among equal scores the leftmost pair goes first;
//   - a final symbol that is an UNUSED piece is split back into the two symbols it was merged
//     from (recursively);
//   - each symbol's id is looked up reserved pieces (CONTROL, UNKNOWN, BYTE) first, then the
//     others, else the UNKNOWN piece's id.
// A priority queue of candidate pairs makes this O(n log n) in the text's length.
//
// Immutable after Create: Encode and PieceToId are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "runtime/model/internal/sentencepiece_model_reader.h"

namespace rackserve::model::internal {

// One segment of the text: `piece` points into the text given to Encode.
struct BpeSegment {
  std::string_view piece;
  int32_t id = 0;
};

class BpeEncoder {
 public:
  // `pieces` in id order. INVALID_ARGUMENT naming the piece (id and text) when a piece is empty
  // or repeats an earlier one (stricter than libsentencepiece, which lets a text appear once as a
  // reserved and once as an ordinary piece), and when there is not exactly one UNKNOWN piece.
  static absl::StatusOr<std::unique_ptr<BpeEncoder>> Create(const std::vector<SpmPiece>& pieces);

  BpeEncoder(const BpeEncoder&) = delete;
  BpeEncoder& operator=(const BpeEncoder&) = delete;

  // Appends the segmentation of `normalized` (the normalizer's output) to `segments`; the
  // segments' pieces concatenate to `normalized`. Nothing is appended for empty text.
  void Encode(std::string_view normalized, std::vector<BpeSegment>* segments) const;

  // The id of `piece`: reserved pieces first, then the others; unk_id() when there is none.
  int32_t PieceToId(std::string_view piece) const;
  int32_t unk_id() const { return unk_id_; }

 private:
  BpeEncoder() = default;

  // Length in bytes of the first symbol of `text` (non-empty) and whether it is a USER_DEFINED
  // piece (then it is frozen: never merged).
  size_t FirstSymbolLength(std::string_view text, bool* frozen) const;
  // The id of `piece` among the mergeable (NORMAL, USER_DEFINED, UNUSED) pieces, or -1.
  int32_t MergeableId(std::string_view piece) const;

  absl::flat_hash_map<std::string, int32_t> mergeable_;  // NORMAL, USER_DEFINED, UNUSED
  absl::flat_hash_map<std::string, int32_t> reserved_;   // CONTROL, UNKNOWN, BYTE
  absl::flat_hash_set<std::string> user_defined_;
  size_t max_user_defined_length_ = 0;
  std::vector<float> scores_;  // by id
  std::vector<bool> unused_;   // by id: UNUSED pieces
  bool has_unused_ = false;
  int32_t unk_id_ = -1;
};

}  // namespace rackserve::model::internal
