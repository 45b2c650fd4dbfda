// FileRendezvous with one thread per rank in a fresh directory: the exchange itself (binary
// blobs), disagreeing WorldSpecs, missing ranks, bad and repeated ranks, corrupt records.
#include "runtime/comm/file_rendezvous.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/comm/rank_processes.h"

namespace rackserve::comm {
namespace {

using ::rackserve::comm::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(10);

WorldSpec Spec(int size) {
  WorldSpec w;
  w.size = size;
  w.layout = absl::StrCat("tp", size);
  w.model = "model-hash-1";
  return w;
}

// Runs Exchange for every rank in `worlds` (index = rank) on its own thread.
std::vector<absl::StatusOr<std::vector<std::string>>> ExchangeAll(
    const std::string& dir, const std::vector<WorldSpec>& worlds,
    const std::vector<std::string>& blobs, absl::Duration timeout = kTimeout) {
  std::vector<absl::StatusOr<std::vector<std::string>>> results(worlds.size());
  std::vector<std::thread> threads;
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir);
  for (size_t r = 0; r < worlds.size(); ++r) {
    threads.emplace_back([&, r] {
      results[r] = rendezvous->Exchange(worlds[r], static_cast<int>(r), blobs[r], timeout);
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(FileRendezvousTest, EveryRankGetsEveryBlobInRankOrder) {
  TempDir dir;
  const std::vector<std::string> blobs = {std::string("\0\x01\xff\n rank0", 10), "", "r2",
                                          std::string(100'000, 'z')};
  const auto results = ExchangeAll(dir.path(), std::vector<WorldSpec>(4, Spec(4)), blobs);
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_THAT(*result, ElementsAreArray(blobs));
  }
}

TEST(FileRendezvousTest, SizeOneNeedsNobodyElse) {
  TempDir dir;
  const auto result = MakeFileRendezvous(dir.path())->Exchange(Spec(1), 0, "only", kTimeout);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(*result, ElementsAreArray({"only"}));
}

TEST(FileRendezvousTest, DisagreeingWorldIsFailedPreconditionNamingTheField) {
  struct Case {
    std::string field;
    void (*change)(WorldSpec&);
    std::string theirs;
  };
  const Case cases[] = {
      {"size", [](WorldSpec& w) { w.size = 3; }, "3"},
      {"layout", [](WorldSpec& w) { w.layout = "pp2"; }, "pp2"},
      {"model", [](WorldSpec& w) { w.model = "other-model"; }, "other-model"},
      {"protocol_version", [](WorldSpec& w) { w.protocol_version = 7; }, "7"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    TempDir dir;
    std::vector<WorldSpec> worlds(2, Spec(2));
    c.change(worlds[1]);
    const auto results = ExchangeAll(dir.path(), worlds, {"a", "b"});
    // Rank 0 reads rank 1's record (and the other way round): both fail.
    for (int r = 0; r < 2; ++r) {
      ASSERT_FALSE(results[r].ok());
      EXPECT_EQ(results[r].status().code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_THAT(
          results[r].status().message(),
          AllOf(HasSubstr(c.field), HasSubstr("'" + c.theirs + "'"), HasSubstr(dir.path())));
    }
  }
}

TEST(FileRendezvousTest, MissingRanksAreDeadlineExceededNamingThem) {
  TempDir dir;
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir.path());
  const absl::Time start = absl::Now();
  const auto result = rendezvous->Exchange(Spec(4), 2, "x", absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(result.status().message(),
              AllOf(HasSubstr("ranks 0, 1, 3 of 4"), HasSubstr(dir.path())));
}

TEST(FileRendezvousTest, BadRankSizeAndRepeatedRankAreInvalidArgument) {
  TempDir dir;
  const std::unique_ptr<Rendezvous> rendezvous = MakeFileRendezvous(dir.path());
  for (int rank : {-1, 2}) {
    const auto result = rendezvous->Exchange(Spec(2), rank, "x", kTimeout);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(result.status().message(), HasSubstr(absl::StrCat("rank ", rank)));
  }
  const auto bad_size = rendezvous->Exchange(Spec(0), 0, "x", kTimeout);
  EXPECT_EQ(bad_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_size.status().message(), HasSubstr("size 0"));

  EXPECT_EQ(rendezvous->Exchange(Spec(2), 1, "first", absl::Milliseconds(10)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  const auto again = rendezvous->Exchange(Spec(2), 1, "second", kTimeout);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(again.status().message(),
              AllOf(HasSubstr("rank 1 has already published"), HasSubstr(dir.path())));
}

TEST(FileRendezvousTest, CorruptRecordIsDataLossNamingTheFile) {
  const std::vector<std::string> records = {
      "not json", R"({"size": 2})",
      R"({"protocol_version": 1, "size": 2, "layout": "tp2", "model": "model-hash-1",
          "rank": 1, "blob": "***"})",
      R"({"protocol_version": 1, "size": 2, "layout": "tp2", "model": "model-hash-1",
          "rank": 0, "blob": ""})"};
  for (const std::string& record : records) {
    SCOPED_TRACE(record);
    TempDir dir;
    const std::string path = dir.path() + "/rank-1";
    std::ofstream(path) << record;
    const auto result = MakeFileRendezvous(dir.path())->Exchange(Spec(2), 0, "x", kTimeout);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
    EXPECT_THAT(result.status().message(), HasSubstr(path));
  }
}

TEST(FileRendezvousTest, MissingDirectoryIsNotFound) {
  TempDir dir;
  const std::string missing = dir.path() + "/nope";
  const auto result = MakeFileRendezvous(missing)->Exchange(Spec(1), 0, "x", kTimeout);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(result.status().message(), HasSubstr(missing));
}

}  // namespace
}  // namespace rackserve::comm
