#include "runtime/model/internal/bpe_encoder.h"

#include <algorithm>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rackserve::model::internal {
namespace {

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Length of the UTF-8 character that starts with `lead`, judged by the lead byte alone
// (SentencePiece's OneCharLen): the normalizer has already made the text valid UTF-8.
size_t OneCharLength(char lead) {
  static constexpr char kLengths[] = "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4";
  return static_cast<size_t>(kLengths[(static_cast<uint8_t>(lead)) >> 4]);
}

struct Symbol {
  int32_t prev;            // index of the previous live symbol, -1 at the start
  int32_t next;            // index of the next live symbol, -1 at the end
  bool frozen;             // a USER_DEFINED piece: never merged
  std::string_view piece;  // empty once merged into its left neighbour
};

// A candidate merge of the live symbols `left` and `right`. Stale once either changed, which
// the piece sizes reveal (symbols only grow, and a merged-away symbol is empty).
struct Candidate {
  float score;
  int32_t left;
  int32_t right;
  size_t size;  // bytes of the merged piece
};

// Highest score first; among equal scores the leftmost pair (bpe_model.cc's comparator).
struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeEncoder>> BpeEncoder::Create(
    const std::vector<SpmPiece>& pieces) {
  std::unique_ptr<BpeEncoder> encoder(new BpeEncoder());
  encoder->scores_.reserve(pieces.size());
  encoder->unused_.reserve(pieces.size());
  absl::flat_hash_map<std::string, int32_t> all;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const SpmPiece& piece = pieces[i];
    const auto id = static_cast<int32_t>(i);
    if (piece.piece.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("piece ", id, " is empty"));
    }
    if (const auto [it, inserted] = all.emplace(piece.piece, id); !inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("piece ", id, " \"", piece.piece, "\" repeats piece ", it->second));
    }
    switch (piece.type) {
      case SpmPieceType::kNormal:
      case SpmPieceType::kUnused:
        encoder->mergeable_.emplace(piece.piece, id);
        break;
      case SpmPieceType::kUserDefined:
        encoder->mergeable_.emplace(piece.piece, id);
        encoder->user_defined_.insert(piece.piece);
        encoder->max_user_defined_length_ =
            std::max(encoder->max_user_defined_length_, piece.piece.size());
        break;
      case SpmPieceType::kUnknown:
        if (encoder->unk_id_ >= 0) {
          return absl::InvalidArgumentError(absl::StrCat("piece ", id, " \"", piece.piece,
                                                         "\" is a second UNKNOWN piece (piece ",
                                                         encoder->unk_id_, " is one)"));
        }
        encoder->unk_id_ = id;
        encoder->reserved_.emplace(piece.piece, id);
        break;
      case SpmPieceType::kControl:
      case SpmPieceType::kByte:
        encoder->reserved_.emplace(piece.piece, id);
        break;
    }
    encoder->scores_.push_back(piece.score);
    encoder->unused_.push_back(piece.type == SpmPieceType::kUnused);
    encoder->has_unused_ = encoder->has_unused_ || piece.type == SpmPieceType::kUnused;
  }
  if (encoder->unk_id_ < 0) {
    return absl::InvalidArgumentError("no piece has type UNKNOWN (an <unk> piece is required)");
  }
  return encoder;
}

int32_t BpeEncoder::MergeableId(std::string_view piece) const {
  const auto it = mergeable_.find(ToAbsl(piece));
  return it == mergeable_.end() ? -1 : it->second;
}

int32_t BpeEncoder::PieceToId(std::string_view piece) const {
  if (const auto it = reserved_.find(ToAbsl(piece)); it != reserved_.end()) return it->second;
  const int32_t id = MergeableId(piece);
  return id >= 0 ? id : unk_id_;
}

size_t BpeEncoder::FirstSymbolLength(std::string_view text, bool* frozen) const {
  const size_t longest = std::min(text.size(), max_user_defined_length_);
  for (size_t length = longest; length > 0; --length) {
    if (user_defined_.contains(ToAbsl(text.substr(0, length)))) {
      *frozen = true;
      return length;
    }
  }
  *frozen = false;
  return std::min(text.size(), OneCharLength(text[0]));
}

void BpeEncoder::Encode(std::string_view normalized, std::vector<BpeSegment>* segments) const {
  if (normalized.empty()) return;
  std::vector<Symbol> symbols;
  symbols.reserve(normalized.size());
  for (std::string_view rest = normalized; !rest.empty();) {
    Symbol symbol;
    const size_t length = FirstSymbolLength(rest, &symbol.frozen);
    const auto index = static_cast<int32_t>(symbols.size());
    symbol.piece = rest.substr(0, length);
    symbol.prev = index - 1;
    rest.remove_prefix(length);
    symbol.next = rest.empty() ? -1 : index + 1;
    symbols.push_back(symbol);
  }

  // Reverse merges of UNUSED pieces, for resegmenting them (as bpe_model.cc: the pair recorded
  // last for a piece wins).
  absl::flat_hash_map<absl::string_view, std::pair<std::string_view, std::string_view>> unmerge;
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> agenda(CandidateOrder(),
                                                                                std::move(storage));
  const auto MaybeAddCandidate = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view merged(symbols[left].piece.data(),
                                  symbols[left].piece.size() + symbols[right].piece.size());
    const int32_t id = MergeableId(merged);
    if (id < 0) return;
    agenda.push(Candidate{scores_[id], left, right, merged.size()});
    if (unused_[id]) unmerge[ToAbsl(merged)] = {symbols[left].piece, symbols[right].piece};
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    MaybeAddCandidate(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }

  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.piece.empty() || right.piece.empty() ||
        left.piece.size() + right.piece.size() != top.size) {
      continue;  // stale
    }
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.piece = std::string_view();
    MaybeAddCandidate(left.prev, top.left);
    MaybeAddCandidate(top.left, left.next);
  }

  const auto Emit = [&](const auto& self, std::string_view piece) -> void {
    const int32_t id = PieceToId(piece);
    if (has_unused_ && unused_[id]) {
      if (const auto it = unmerge.find(ToAbsl(piece)); it != unmerge.end()) {
        self(self, it->second.first);
        self(self, it->second.second);
        return;
      }
    }
    segments->push_back(BpeSegment{piece, id});
  };
  for (int32_t index = 0; index != -1; index = symbols[index].next) {
    Emit(Emit, symbols[index].piece);
  }
}

}  // namespace rackserve::model::internal
