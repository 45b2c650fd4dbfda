// Build-time fixture for tokenizer_grpc_link_test: trains a tokenizer into <dir> and writes
// <dir>/golden.tsv, one line per sample text: the text in hex, TAB, libsentencepiece's ids
// (space-separated), TAB, libsentencepiece's decoding of those ids in hex. This program links
// libsentencepiece (as the oracle) and no libprotobuf; the test links the other way round.
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/model/internal/file_contents.h"
#include "runtime/model/internal/sentencepiece_bridge.h"
#include "runtime/model/tokenizer_trainer.h"

namespace {

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "tokenizer_fixture_writer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using rackserve::model::internal::ReadFileContents;
  using rackserve::model::internal::SpmProcessor;
  using rackserve::model::internal::SpmStatus;
  using rackserve::model::internal::WriteFileContents;
  if (argc != 2) return Fail("usage: tokenizer_fixture_writer <dir>");
  const std::string dir = argv[1];
  const absl::Status trained = rackserve::model::TrainTokenizer(dir, 512);
  if (!trained.ok()) return Fail(trained.ToString());
  const absl::StatusOr<std::string> model = ReadFileContents(dir + "/tokenizer.model");
  if (!model.ok()) return Fail(model.status().ToString());
  SpmProcessor oracle;
  if (const SpmStatus s = oracle.LoadFromSerialized(*model); !s.ok()) return Fail(s.message);
  const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog.",
      "  two leading spaces, a double  gap and digits 1234567890 ",
      "tab\tnew\nline",
      "na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82",
      "",
  };
  std::string golden;
  for (const std::string& text : texts) {
    std::vector<int> ids;
    std::string decoded;
    if (const SpmStatus s = oracle.Encode(text, &ids); !s.ok()) return Fail(s.message);
    if (const SpmStatus s = oracle.Decode(ids, &decoded); !s.ok()) return Fail(s.message);
    golden += Hex(text) + "\t";
    for (size_t i = 0; i < ids.size(); ++i) golden += (i ? " " : "") + std::to_string(ids[i]);
    golden += "\t" + Hex(decoded) + "\n";
  }
  const absl::Status written = WriteFileContents(dir + "/golden.tsv", golden);
  if (!written.ok()) return Fail(written.ToString());
  return 0;
}
