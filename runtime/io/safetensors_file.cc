#include "runtime/io/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"

namespace rackserve::io {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kHeaderSizeBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

// Closes a file descriptor when it goes out of scope (the mapping outlives it).
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() { ::close(fd_); }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

 private:
  const int fd_;
};

// Reads a JSON integer in [0, int64 max] into *out; false when `j` is anything else.
bool ReadNonNegative(const Json& j, int64_t* out) {
  if (!j.is_number_unsigned()) return false;  // nlohmann stores every non-negative int unsigned
  const uint64_t u = j.get<uint64_t>();
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = static_cast<int64_t>(u);
  return true;
}

// One tensor entry's byte range, for the overlap check.
struct Range {
  int64_t begin;
  int64_t end;
  const std::string* name;
};

}  // namespace

SafetensorsFile::SafetensorsFile(std::string path, void* map, size_t map_size)
    : path_(std::move(path)), map_(map), map_size_(map_size) {}

SafetensorsFile::~SafetensorsFile() { ::munmap(map_, map_size_); }

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open safetensors file '", path, "'"));
  }
  const ScopedFd closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot stat safetensors file '", path, "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors path '", path, "' is not a regular file"));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < kHeaderSizeBytes) {
    return absl::DataLossError(absl::StrCat("safetensors file '", path, "' is truncated: ", size,
                                            " bytes, less than the 8-byte header size"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot mmap safetensors file '", path, "'"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, map, size));
  RS_RETURN_IF_ERROR(file->ParseHeader());
  return file;
}

absl::Status SafetensorsFile::ParseHeader() {
  const auto* bytes = static_cast<const uint8_t*>(map_);
  uint64_t header_size = 0;
  for (int i = static_cast<int>(kHeaderSizeBytes) - 1; i >= 0; --i) {
    header_size = (header_size << 8) | bytes[i];
  }
  const std::string file = absl::StrCat("safetensors file '", path_, "'");
  if (header_size > kMaxHeaderBytes) {
    return absl::DataLossError(absl::StrCat(file, ": header size ", header_size,
                                            " exceeds the limit of ", kMaxHeaderBytes, " bytes"));
  }
  if (header_size > map_size_ - kHeaderSizeBytes) {
    return absl::DataLossError(absl::StrCat(file, ": header size ", header_size,
                                            " runs past the end of the file (", map_size_,
                                            " bytes)"));
  }
  const char* text = reinterpret_cast<const char*>(bytes + kHeaderSizeBytes);

  // nlohmann keeps the last of duplicate keys; spot them while parsing (depth 1: top level).
  std::set<std::string> seen;
  std::string duplicate;
  const Json::parser_callback_t note_duplicates = [&](int depth, Json::parse_event_t event,
                                                      Json& parsed) {
    const std::string* key = parsed.get_ptr<const std::string*>();
    if (depth == 1 && event == Json::parse_event_t::key && key != nullptr &&
        !seen.insert(*key).second && duplicate.empty()) {
      duplicate = *key;
    }
    return true;
  };
  const Json header =
      Json::parse(text, text + header_size, note_duplicates, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::DataLossError(absl::StrCat(file, ": header is not valid JSON"));
  }
  if (!header.is_object()) {
    return absl::DataLossError(absl::StrCat(file, ": header is not a JSON object"));
  }
  if (!duplicate.empty()) {
    return absl::DataLossError(
        absl::StrCat(file, ": header lists '", duplicate, "' more than once"));
  }

  const uint64_t data_size = map_size_ - kHeaderSizeBytes - header_size;
  const uint8_t* data = bytes + kHeaderSizeBytes + header_size;
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object()) {
        return absl::DataLossError(absl::StrCat(file, ": __metadata__ is not a JSON object"));
      }
      for (const auto& [key, value] : entry.items()) {
        const std::string* text_value = value.get_ptr<const std::string*>();
        if (text_value == nullptr) {
          return absl::DataLossError(
              absl::StrCat(file, ": __metadata__ value of '", key, "' is not a string"));
        }
        metadata_[key] = *text_value;
      }
      continue;
    }
    const std::string where = absl::StrCat(file, ", tensor '", name, "'");
    if (!entry.is_object()) {
      return absl::DataLossError(absl::StrCat(where, ": entry is not a JSON object"));
    }

    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return absl::DataLossError(absl::StrCat(where, ": 'dtype' is missing or not a string"));
    }
    const absl::StatusOr<DType> dtype = ParseDType(dtype_it->get_ref<const std::string&>());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", dtype.status().message()));
    }

    const auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return absl::DataLossError(absl::StrCat(where, ": 'shape' is missing or not an array"));
    }
    std::vector<int64_t> shape;
    for (const Json& dim : *shape_it) {
      int64_t d;
      if (!ReadNonNegative(dim, &d)) {
        return absl::DataLossError(absl::StrCat(where, ": shape ", shape_it->dump(),
                                                " has a dimension that is not an integer in [0, ",
                                                std::numeric_limits<int64_t>::max(), "]"));
      }
      shape.push_back(d);
    }

    const auto offsets_it = entry.find("data_offsets");
    int64_t begin, end;
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !ReadNonNegative((*offsets_it)[0], &begin) || !ReadNonNegative((*offsets_it)[1], &end)) {
      return absl::DataLossError(
          absl::StrCat(where, ": 'data_offsets' is missing or not two non-negative integers"));
    }
    if (begin > end) {
      return absl::DataLossError(
          absl::StrCat(where, ": data_offsets [", begin, ", ", end, "] begin after end"));
    }
    if (static_cast<uint64_t>(end) > data_size) {
      return absl::DataLossError(absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                              "] run past the end of the data region (", data_size,
                                              " bytes)"));
    }

    const std::optional<int64_t> expected = TensorByteSize(*dtype, shape);
    if (!expected.has_value() || *expected != end - begin) {
      return absl::DataLossError(absl::StrCat(
          where, ": data_offsets [", begin, ", ", end, "] hold ", end - begin, " bytes, but ",
          std::string(DTypeName(*dtype)), " [", absl::StrJoin(shape, ", "), "] needs ",
          expected.has_value() ? absl::StrCat(*expected) : std::string("more than 2^63")));
    }

    TensorView view;
    view.name = name;
    view.dtype = *dtype;
    view.shape = std::move(shape);
    view.data = std::span<const uint8_t>(data + begin, static_cast<size_t>(end - begin));
    const auto [it, inserted] = tensors_.emplace(name, std::move(view));
    RS_CHECK(inserted);  // duplicates were rejected above
    if (begin != end) ranges.push_back(Range{begin, end, &it->first});
  }

  // Sorted by begin, any overlap shows up between neighbours.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& a = ranges[i - 1];
    const Range& b = ranges[i];
    if (b.begin < a.end) {
      return absl::DataLossError(absl::StrCat(file, ": tensors '", *a.name, "' [", a.begin, ", ",
                                              a.end, ") and '", *b.name, "' [", b.begin, ", ",
                                              b.end, ") overlap"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsFile::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) names.push_back(name);
  return names;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace rackserve::io
