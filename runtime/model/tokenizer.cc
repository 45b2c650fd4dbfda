#include "runtime/model/tokenizer.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/internal/bpe_encoder.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/internal/sentencepiece_model_reader.h"

namespace rackserve::model {
namespace {

using internal::SpmPieceType;

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";           // U+2581
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD
constexpr int kByteValues = 256;
// Symbols are indexed with int32_t and a character may grow to 3 bytes (U+FFFD) in normalizing.
constexpr size_t kMaxTextBytes = size_t{1} << 28;

std::string_view ModelTypeName(internal::SpmModelType type) {
  switch (type) {
    case internal::SpmModelType::kUnigram:
      return "UNIGRAM";
    case internal::SpmModelType::kBpe:
      return "BPE";
    case internal::SpmModelType::kWord:
      return "WORD";
    case internal::SpmModelType::kChar:
      return "CHAR";
  }
  return "?";
}

bool IsTrailByte(uint8_t byte) { return (byte & 0xC0) == 0x80; }

// Whether `text` (non-empty) starts with a well-formed UTF-8 character (no overlong forms, no
// surrogates, at most U+10FFFF), and its length in bytes (1 when it does not), as SentencePiece's
// IsValidDecodeUTF8 judges it.
bool StartsWithValidUtf8(std::string_view text, size_t* length) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  *length = 1;
  const uint8_t lead = byte(0);
  if (lead < 0x80) return true;
  if (text.size() >= 2 && (lead & 0xE0) == 0xC0) {
    const uint32_t cp = ((lead & 0x1Fu) << 6) | (byte(1) & 0x3Fu);
    if (IsTrailByte(byte(1)) && cp >= 0x80) {
      *length = 2;
      return true;
    }
  } else if (text.size() >= 3 && (lead & 0xF0) == 0xE0) {
    const uint32_t cp = ((lead & 0x0Fu) << 12) | ((byte(1) & 0x3Fu) << 6) | (byte(2) & 0x3Fu);
    if (IsTrailByte(byte(1)) && IsTrailByte(byte(2)) && cp >= 0x800 &&
        (cp < 0xD800 || cp > 0xDFFF)) {
      *length = 3;
      return true;
    }
  } else if (text.size() >= 4 && (lead & 0xF8) == 0xF0) {
    const uint32_t cp = ((lead & 0x07u) << 18) | ((byte(1) & 0x3Fu) << 12) |
                        ((byte(2) & 0x3Fu) << 6) | (byte(3) & 0x3Fu);
    if (IsTrailByte(byte(1)) && IsTrailByte(byte(2)) && IsTrailByte(byte(3)) && cp >= 0x10000 &&
        cp <= 0x10FFFF) {
      *length = 4;
      return true;
    }
  }
  return false;
}

// Appends decoded byte-fallback bytes: each well-formed UTF-8 character as is, each byte that
// starts none as U+FFFD.
void AppendFallbackBytes(std::string_view bytes, std::string* text) {
  while (!bytes.empty()) {
    size_t length = 0;
    if (StartsWithValidUtf8(bytes, &length)) {
      text->append(bytes.substr(0, length));
    } else {
      text->append(kReplacementCharacter);
    }
    bytes.remove_prefix(length);
  }
}

// The byte a BYTE piece stands for ("<0x4A>": exactly two upper-case hex digits), or -1.
int PieceToByte(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (char c : piece.substr(3, 2)) {
    value *= 16;
    if (c >= '0' && c <= '9') {
      value += c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value += c - 'A' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

}  // namespace

struct Tokenizer::Model {
  std::string path;                  // for messages
  std::vector<std::string> pieces;   // by id
  std::vector<SpmPieceType> types;   // by id
  std::vector<int16_t> byte_values;  // by id: the byte of a BYTE piece, else -1
  std::unique_ptr<internal::BpeEncoder> encoder;
  internal::SpmNormalizerSpec normalizer;
  bool byte_fallback = false;
  std::array<int32_t, kByteValues> byte_ids{};  // when byte_fallback: the id of each byte's piece
  std::string unk_surface;
  int32_t bos_id = -1;
  int32_t eos_id = -1;

  // SentencePiece's Normalizer::Normalize for the identity normalizer: malformed UTF-8 bytes
  // become U+FFFD, optionally leading/trailing/repeated spaces are dropped, a space is put in
  // front (dummy prefix), and spaces become U+2581.
  std::string Normalize(std::string_view input) const;
  // The id of a CONTROL piece named `piece`, or -1.
  int32_t ControlId(std::string_view piece) const;
};

std::string Tokenizer::Model::Normalize(std::string_view input) const {
  std::string normalized;
  if (normalizer.remove_extra_whitespaces) {
    while (!input.empty() && input.front() == ' ') input.remove_prefix(1);
  }
  if (input.empty()) return normalized;
  normalized.reserve(input.size() * 3);
  const std::string_view space = normalizer.escape_whitespaces ? kSpaceSymbol : " ";
  if (normalizer.add_dummy_prefix) normalized.append(space);
  bool is_prev_space = normalizer.remove_extra_whitespaces;
  while (!input.empty()) {
    size_t length = 0;
    const std::string_view character =
        StartsWithValidUtf8(input, &length) ? input.substr(0, length) : kReplacementCharacter;
    input.remove_prefix(length);
    if (character == " ") {
      if (!is_prev_space) normalized.append(space);
      is_prev_space = normalizer.remove_extra_whitespaces;
    } else {
      normalized.append(character);
      is_prev_space = false;
    }
  }
  if (normalizer.remove_extra_whitespaces) {
    while (normalized.size() >= space.size() &&
           std::string_view(normalized).substr(normalized.size() - space.size()) == space) {
      normalized.resize(normalized.size() - space.size());
    }
  }
  return normalized;
}

int32_t Tokenizer::Model::ControlId(std::string_view piece) const {
  const int32_t id = encoder->PieceToId(piece);
  return types[id] == SpmPieceType::kControl ? id : -1;
}

Tokenizer::Tokenizer(std::unique_ptr<const Model> model) : model_(std::move(model)) {}

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  RS_ASSIGN_OR_RETURN(std::string bytes, internal::ReadFileContents(path));
  RS_ASSIGN_OR_RETURN(internal::SpmModel spm, internal::ReadSpmModel(bytes, path));
  const auto Invalid = [&](std::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a valid SentencePiece model: ", std::string(what)));
  };
  const auto Unsupported = [&](std::string_view what) {
    return absl::UnimplementedError(
        absl::StrCat(path, ": unsupported SentencePiece model: ", std::string(what),
                     " (supported: BPE models with the identity normalizer, like Llama 2's)"));
  };
  if (!spm.has_trainer_spec) return Invalid("no trainer_spec (ModelProto field 2)");
  if (!spm.has_normalizer_spec) return Invalid("no normalizer_spec (ModelProto field 3)");
  if (spm.pieces.empty()) return Invalid("no pieces (ModelProto field 1)");
  const internal::SpmTrainerSpec& trainer = spm.trainer_spec;
  if (trainer.model_type != internal::SpmModelType::kBpe) {
    return Unsupported(
        absl::StrCat("trainer_spec.model_type ", std::string(ModelTypeName(trainer.model_type))));
  }
  if (!spm.normalizer_spec.precompiled_charsmap.empty()) {
    return Unsupported(absl::StrCat("normalizer \"", spm.normalizer_spec.name,
                                    "\" (normalizer_spec.precompiled_charsmap is not empty)"));
  }
  if (spm.has_denormalizer_spec && !spm.denormalizer_spec.precompiled_charsmap.empty()) {
    return Unsupported(absl::StrCat("denormalizer \"", spm.denormalizer_spec.name,
                                    "\" (denormalizer_spec.precompiled_charsmap is not empty)"));
  }
  if (trainer.treat_whitespace_as_suffix) {
    return Unsupported("trainer_spec.treat_whitespace_as_suffix");
  }

  auto model = std::make_unique<Model>();
  model->path = path;
  absl::StatusOr<std::unique_ptr<internal::BpeEncoder>> encoder =
      internal::BpeEncoder::Create(spm.pieces);
  if (!encoder.ok()) return Invalid(std::string(encoder.status().message()));
  model->encoder = *std::move(encoder);
  model->byte_fallback = trainer.byte_fallback;
  model->byte_ids.fill(-1);
  model->pieces.reserve(spm.pieces.size());
  model->types.reserve(spm.pieces.size());
  model->byte_values.reserve(spm.pieces.size());
  for (size_t id = 0; id < spm.pieces.size(); ++id) {
    internal::SpmPiece& piece = spm.pieces[id];
    int byte = -1;
    if (piece.type == SpmPieceType::kByte) {
      if (!trainer.byte_fallback) {
        return Invalid(absl::StrCat("piece ", id, " \"", piece.piece,
                                    "\" is a BYTE piece but trainer_spec.byte_fallback is false"));
      }
      byte = PieceToByte(piece.piece);
      if (byte < 0) {
        return Invalid(
            absl::StrCat("BYTE piece ", id, " \"", piece.piece, "\" is not of the form <0xNN>"));
      }
      model->byte_ids[byte] = static_cast<int32_t>(id);
    }
    model->byte_values.push_back(static_cast<int16_t>(byte));
    model->types.push_back(piece.type);
    model->pieces.push_back(std::move(piece.piece));
  }
  if (model->byte_fallback) {
    for (int byte = 0; byte < kByteValues; ++byte) {
      if (model->byte_ids[byte] < 0) {
        return Invalid(absl::StrFormat(
            "trainer_spec.byte_fallback is true but there is no BYTE piece <0x%02X>", byte));
      }
    }
  }
  model->normalizer = spm.normalizer_spec;
  model->unk_surface = trainer.unk_surface;
  model->bos_id = model->ControlId(trainer.bos_piece.empty() ? "<s>" : trainer.bos_piece);
  model->eos_id = model->ControlId(trainer.eos_piece.empty() ? "</s>" : trainer.eos_piece);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(model)));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_bos) const {
  if (add_bos && bos_id() < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(model_->path, ": the tokenizer has no bos token to add"));
  }
  if (text.size() > kMaxTextBytes) {
    return absl::InvalidArgumentError(absl::StrCat("text of ", text.size(),
                                                   " bytes is too long to tokenize (the limit is ",
                                                   kMaxTextBytes, " bytes)"));
  }
  const std::string normalized = model_->Normalize(text);
  std::vector<internal::BpeSegment> segments;
  model_->encoder->Encode(normalized, &segments);
  std::vector<int32_t> ids;
  ids.reserve(segments.size() + (add_bos ? 1 : 0));
  if (add_bos) ids.push_back(bos_id());
  // As SentencePieceProcessor: an unknown segment becomes its bytes' pieces under byte fallback;
  // otherwise a run of unknown segments becomes one unknown id.
  bool previous_unknown = false;
  for (const internal::BpeSegment& segment : segments) {
    const SpmPieceType type = model_->types[segment.id];
    const bool unknown = type == SpmPieceType::kUnknown;
    if (unknown && model_->byte_fallback) {
      for (char byte : segment.piece) ids.push_back(model_->byte_ids[static_cast<uint8_t>(byte)]);
    } else if (!(unknown && previous_unknown)) {
      ids.push_back(segment.id);
    }
    previous_unknown = unknown;
  }
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids) const {
  const int size = vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ", size,
                                                     ") of ", model_->path));
    }
  }
  // As SentencePieceProcessor::Decode: runs of byte pieces are decoded together; the first
  // U+2581 of the text is the dummy prefix and is dropped, when the model adds one.
  const bool strip_prefix =
      model_->normalizer.add_dummy_prefix || model_->normalizer.remove_extra_whitespaces;
  std::string text;
  std::string pending_bytes;
  bool at_start = true;
  bool consumed_prefix = false;
  for (const int32_t id : ids) {
    const int16_t byte = model_->byte_values[id];
    if (byte >= 0) {
      pending_bytes.push_back(static_cast<char>(byte));
      continue;
    }
    AppendFallbackBytes(pending_bytes, &text);
    pending_bytes.clear();
    if (consumed_prefix || !text.empty()) at_start = false;
    consumed_prefix = false;
    const SpmPieceType type = model_->types[id];
    if (type == SpmPieceType::kControl) continue;
    if (type == SpmPieceType::kUnknown) {
      text.append(model_->unk_surface);
      continue;
    }
    std::string_view piece = model_->pieces[id];
    if (at_start && strip_prefix && piece.starts_with(kSpaceSymbol)) {
      piece.remove_prefix(kSpaceSymbol.size());
      consumed_prefix = !model_->normalizer.remove_extra_whitespaces;
    }
    for (size_t at = piece.find(kSpaceSymbol); at != std::string_view::npos;
         at = piece.find(kSpaceSymbol)) {
      text.append(piece.substr(0, at));
      text.push_back(' ');
      piece.remove_prefix(at + kSpaceSymbol.size());
    }
    text.append(piece);
  }
  AppendFallbackBytes(pending_bytes, &text);
  return text;
}

int Tokenizer::vocab_size() const { return static_cast<int>(model_->pieces.size()); }
int32_t Tokenizer::bos_id() const { return model_->bos_id; }
int32_t Tokenizer::eos_id() const { return model_->eos_id; }

}  // namespace rackserve::model
