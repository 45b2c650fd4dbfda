// The tokenizer in a program linked like every gRPC program (libprotobuf loaded first, see
// RACKSERVE_PROTOBUF_FIRST): it loads a trained tokenizer.model and encodes/decodes exactly as
// libsentencepiece did when the fixture was written (tokenizer_fixture_writer, at build time).
// Also checks that libsentencepiece is not even loaded: the tokenizer no longer needs it.
#include <link.h>

#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rackserve/v1/rack.pb.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/tokenizer.h"

namespace rackserve::model {
namespace {

std::vector<std::string> LoadedLibraries() {
  std::vector<std::string> names;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
        return 0;
      },
      &names);
  return names;
}

bool IsLoaded(const std::string& library) {
  for (const std::string& name : LoadedLibraries()) {
    if (name.find(library) != std::string::npos) return true;
  }
  return false;
}

std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

struct Golden {
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

std::vector<Golden> ReadGolden(const std::string& path) {
  absl::StatusOr<std::string> contents = internal::ReadFileContents(path);
  EXPECT_TRUE(contents.ok()) << contents.status();
  std::vector<Golden> golden;
  std::istringstream lines(contents.ok() ? *contents : "");
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string text, ids, decoded;
    std::getline(fields, text, '\t');
    std::getline(fields, ids, '\t');
    std::getline(fields, decoded, '\t');
    Golden g{FromHex(text), {}, FromHex(decoded)};
    std::istringstream id_stream(ids);
    for (int32_t id; id_stream >> id;) g.ids.push_back(id);
    golden.push_back(g);
  }
  return golden;
}

TEST(TokenizerGrpcLinkTest, LibprotobufIsLoadedAndLibsentencepieceIsNot) {
  v1::GenerateRequest request;
  request.set_prompt_text("hello");
  EXPECT_EQ(request.ByteSizeLong(), 7u);
  EXPECT_TRUE(IsLoaded("libprotobuf.so"));
  EXPECT_FALSE(IsLoaded("libsentencepiece"));
}

TEST(TokenizerGrpcLinkTest, TokenizesPromptTextLikeLibSentencePiece) {
  const std::string dir = RACKSERVE_TOKENIZER_FIXTURE_DIR;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(dir + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<Golden> golden = ReadGolden(dir + "/golden.tsv");
  ASSERT_EQ(golden.size(), 5u);
  for (const Golden& g : golden) {
    SCOPED_TRACE(g.text);
    // As the coordinator will: prompt_text off the wire, ids back onto it.
    v1::GenerateRequest request;
    request.set_prompt_text(g.text);
    v1::GenerateRequest received;
    ASSERT_TRUE(received.ParseFromString(request.SerializeAsString()));
    absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(received.prompt_text(), false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, g.ids);
    received.mutable_prompt_token_ids()->Add(ids->begin(), ids->end());
    absl::StatusOr<std::string> text =
        (*tokenizer)
            ->Decode(std::vector<int32_t>(received.prompt_token_ids().begin(),
                                          received.prompt_token_ids().end()));
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, g.decoded);
    EXPECT_EQ(*text, g.text);
  }
}

}  // namespace
}  // namespace rackserve::model
