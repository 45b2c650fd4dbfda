#include "runtime/comm/file_rendezvous.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace rackserve::comm {
namespace {

using Json = nlohmann::json;

constexpr absl::Duration kFirstPoll = absl::Milliseconds(1);
constexpr absl::Duration kMaxPoll = absl::Milliseconds(20);

std::string RecordPath(const std::string& dir, int rank) {
  return absl::StrCat(dir, "/rank-", rank);
}

// Writes all of `data` to the new file `path` (which must not exist).
absl::Status WriteNewFile(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", path, "'"));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, absl::StrCat("cannot write '", path, "'"));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot close '", path, "'"));
  return absl::OkStatus();
}

// The whole file at `path`; NOT_FOUND when it does not exist (yet).
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open '", path, "'"));
  std::string data;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return absl::ErrnoToStatus(error, absl::StrCat("cannot read '", path, "'"));
    }
    if (n == 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

std::string EncodeRecord(const WorldSpec& world, int rank, const std::string& blob) {
  Json record = {{"protocol_version", world.protocol_version},
                 {"size", world.size},
                 {"layout", world.layout},
                 {"model", world.model},
                 {"rank", rank},
                 {"blob", absl::Base64Escape(absl::string_view(blob.data(), blob.size()))}};
  return record.dump();
}

// One rank's parsed record.
struct Record {
  WorldSpec world;
  int rank = -1;
  std::string blob;
};

absl::StatusOr<Record> DecodeRecord(const std::string& path, const std::string& text) {
  const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto corrupt = [&path](std::string_view what) {
    return absl::DataLossError(
        absl::StrCat("rendezvous record '", path, "' is corrupt: ", std::string(what)));
  };
  if (json.is_discarded() || !json.is_object()) return corrupt("not a JSON object");
  Record record;
  for (auto [key, out] :
       {std::pair<const char*, int*>{"protocol_version", &record.world.protocol_version},
        {"size", &record.world.size},
        {"rank", &record.rank}}) {
    const auto it = json.find(key);
    if (it == json.end() || !it->is_number_integer()) {
      return corrupt(absl::StrCat("field '", key, "' is missing or not an integer"));
    }
    *out = it->get<int>();
  }
  std::string blob64;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"layout", &record.world.layout},
                          {"model", &record.world.model},
                          {"blob", &blob64}}) {
    const auto it = json.find(key);
    if (it == json.end() || !it->is_string()) {
      return corrupt(absl::StrCat("field '", key, "' is missing or not a string"));
    }
    *out = it->get<std::string>();
  }
  if (!absl::Base64Unescape(absl::string_view(blob64.data(), blob64.size()), &record.blob)) {
    return corrupt("field 'blob' is not base64");
  }
  return record;
}

class FileRendezvous : public Rendezvous {
 public:
  explicit FileRendezvous(std::string dir) : dir_(std::move(dir)) {}

  absl::StatusOr<std::vector<std::string>> Exchange(const WorldSpec& world, int rank,
                                                    std::string blob,
                                                    absl::Duration timeout) override {
    RS_RETURN_IF_ERROR(world.Validate());
    RS_RETURN_IF_ERROR(world.ValidateRank(rank));
    const absl::Time deadline = absl::Now() + timeout;
    RS_RETURN_IF_ERROR(Publish(world, rank, blob));

    std::vector<std::string> blobs(world.size);
    std::vector<bool> found(world.size, false);
    blobs[rank] = std::move(blob);
    found[rank] = true;
    int missing = world.size - 1;
    absl::Duration poll = kFirstPoll;
    for (;;) {
      for (int r = 0; r < world.size; ++r) {
        if (found[r]) continue;
        const std::string path = RecordPath(dir_, r);
        absl::StatusOr<std::string> text = ReadFile(path);
        if (absl::IsNotFound(text.status())) continue;
        RS_RETURN_IF_ERROR(text.status());
        RS_ASSIGN_OR_RETURN(Record record, DecodeRecord(path, *text));
        if (record.rank != r) {
          return absl::DataLossError(absl::StrCat("rendezvous record '", path,
                                                  "' is corrupt: ", "it holds rank ", record.rank));
        }
        absl::Status same = CheckSameWorld(world, rank, record.world, r);
        if (!same.ok()) {
          return absl::Status(same.code(),
                              absl::StrCat(same.message(), " (rendezvous in '", dir_, "')"));
        }
        blobs[r] = std::move(record.blob);
        found[r] = true;
        --missing;
      }
      if (missing == 0) return blobs;
      if (absl::Now() >= deadline) return Missing(world, found, timeout);
      absl::SleepFor(std::min(poll, std::max(deadline - absl::Now(), absl::ZeroDuration())));
      poll = std::min(poll * 2, kMaxPoll);
    }
  }

 private:
  // Writes this rank's record to a private temp file and links it into place; linking fails
  // when the record exists, which is how a second publication of the rank is caught.
  absl::Status Publish(const WorldSpec& world, int rank, const std::string& blob) {
    static std::atomic<uint64_t> next_temp{0};
    const std::string temp =
        absl::StrCat(dir_, "/.rank-", rank, ".", ::getpid(), ".", next_temp.fetch_add(1), ".tmp");
    const std::string path = RecordPath(dir_, rank);
    absl::Status written = WriteNewFile(temp, EncodeRecord(world, rank, blob));
    if (absl::IsNotFound(written)) {
      return absl::NotFoundError(
          absl::StrCat("rendezvous directory '", dir_, "' does not exist: ", written.message()));
    }
    RS_RETURN_IF_ERROR(written);
    const int linked = ::link(temp.c_str(), path.c_str());
    const int link_error = errno;
    ::unlink(temp.c_str());
    if (linked != 0 && link_error == EEXIST) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " has already published to '",
                                                     dir_, "' (", path, " exists)"));
    }
    if (linked != 0) {
      return absl::ErrnoToStatus(link_error, absl::StrCat("cannot publish '", path, "'"));
    }
    return absl::OkStatus();
  }

  absl::Status Missing(const WorldSpec& world, const std::vector<bool>& found,
                       absl::Duration timeout) const {
    std::vector<int> missing;
    for (int r = 0; r < world.size; ++r) {
      if (!found[r]) missing.push_back(r);
    }
    return absl::DeadlineExceededError(
        absl::StrCat("rendezvous in '", dir_, "': rank", missing.size() > 1 ? "s " : " ",
                     absl::StrJoin(missing, ", "), " of ", world.size, " did not publish within ",
                     absl::FormatDuration(timeout)));
  }

  const std::string dir_;
};

}  // namespace

std::unique_ptr<Rendezvous> MakeFileRendezvous(std::string dir) {
  return std::make_unique<FileRendezvous>(std::move(dir));
}

}  // namespace rackserve::comm
