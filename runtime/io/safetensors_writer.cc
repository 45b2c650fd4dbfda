#include "runtime/io/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/io/checkpoint.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts would need byte swaps");

constexpr size_t kHeaderAlignment = 8;

std::string JoinPath(const std::string& dir, std::string_view name) {
  return (fs::path(dir) / fs::path(name)).string();
}

// Dumps JSON without throwing: invalid UTF-8 becomes U+FFFD.
std::string DumpJson(const Json& j, int indent) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

// Writes all of `bytes` to fd, retrying short writes and EINTR.
absl::Status WriteAll(int fd, std::span<const uint8_t> bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write '", path, "'"));
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Writes the concatenation of `pieces` to `path` atomically: a temporary file next to it,
// fsync, rename. The temporary file is removed on failure.
absl::Status WriteFileAtomically(const std::string& path,
                                 std::span<const std::span<const uint8_t>> pieces) {
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot create a temporary file for '", path, "'"));
  }
  absl::Status status;
  if (::fchmod(fd, 0644) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot chmod '", tmp, "'"));
  }
  for (const std::span<const uint8_t> piece : pieces) {
    if (status.ok()) status = WriteAll(fd, piece, tmp);
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot fsync '", tmp, "'"));
  }
  if (::close(fd) != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot close '", tmp, "'"));
  }
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot rename '", tmp, "' to '", path, "'"));
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Removes `path` if it exists.
absl::Status RemoveIfPresent(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return absl::ErrnoToStatus(ec.value(), absl::StrCat("cannot remove '", path, "'"));
  return absl::OkStatus();
}

bool IsPrintableAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

}  // namespace

void SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

absl::StatusOr<int64_t> SafetensorsWriter::CheckNewTensor(const std::string& name, DType dtype,
                                                          const std::vector<int64_t>& shape) const {
  if (name.empty() || name == "__metadata__" || !IsPrintableAscii(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad tensor name '", name, "': it must be printable ASCII, not empty or __metadata__"));
  }
  if (tensors_.count(name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("tensor '", name, "' was already added"));
  }
  const std::optional<int64_t> bytes = TensorByteSize(dtype, shape);
  if (!bytes.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': shape [",
                                                   absl::StrJoin(shape, ", "),
                                                   "] has a negative dimension or overflows"));
  }
  return *bytes;
}

absl::Status SafetensorsWriter::Add(std::string name, DType dtype, std::vector<int64_t> shape,
                                    std::vector<uint8_t> bytes) {
  RS_ASSIGN_OR_RETURN(const int64_t expected, CheckNewTensor(name, dtype, shape));
  if (bytes.size() != static_cast<uint64_t>(expected)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "': ", std::string(DTypeName(dtype)), " [", absl::StrJoin(shape, ", "),
        "] needs ", expected, " bytes, got ", bytes.size()));
  }
  total_bytes_ += expected;
  tensors_.emplace(std::move(name), Tensor{dtype, std::move(shape), std::move(bytes)});
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AddFloats(std::string name, DType dtype, std::vector<int64_t> shape,
                                          std::span<const float> values) {
  RS_CHECK(IsFloatDType(dtype));
  RS_ASSIGN_OR_RETURN(const int64_t expected, CheckNewTensor(name, dtype, shape));
  const int64_t numel = expected / DTypeSize(dtype);
  if (values.size() != static_cast<uint64_t>(numel)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': shape [",
                                                   absl::StrJoin(shape, ", "), "] needs ", numel,
                                                   " values, got ", values.size()));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(expected));
  if (dtype == DType::kF32) {
    if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  } else {
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t bits = dtype == DType::kF16 ? numerics::FloatToFp16(values[i])
                                                 : numerics::FloatToBf16(values[i]);
      bytes[2 * i] = static_cast<uint8_t>(bits & 0xFF);
      bytes[2 * i + 1] = static_cast<uint8_t>(bits >> 8);
    }
  }
  return Add(std::move(name), dtype, std::move(shape), std::move(bytes));
}

absl::Status SafetensorsWriter::AddF32(std::string name, std::vector<int64_t> shape,
                                       std::span<const float> values) {
  return AddFloats(std::move(name), DType::kF32, std::move(shape), values);
}

absl::Status SafetensorsWriter::AddF16(std::string name, std::vector<int64_t> shape,
                                       std::span<const float> values) {
  return AddFloats(std::move(name), DType::kF16, std::move(shape), values);
}

absl::Status SafetensorsWriter::AddBf16(std::string name, std::vector<int64_t> shape,
                                        std::span<const float> values) {
  return AddFloats(std::move(name), DType::kBF16, std::move(shape), values);
}

absl::Status SafetensorsWriter::WriteTensors(const std::string& path,
                                             std::vector<const Entry*> tensors) const {
  // Larger elements first keeps every tensor aligned to its element size without gaps.
  std::sort(tensors.begin(), tensors.end(), [](const Entry* a, const Entry* b) {
    const int64_t sa = DTypeSize(a->second.dtype), sb = DTypeSize(b->second.dtype);
    return sa != sb ? sa > sb : a->first < b->first;
  });
  Json header = Json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  int64_t offset = 0;
  for (const Entry* entry : tensors) {
    const Tensor& t = entry->second;
    const int64_t end = offset + static_cast<int64_t>(t.bytes.size());
    header[entry->first] = {{"dtype", std::string(DTypeName(t.dtype))},
                            {"shape", t.shape},
                            {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = DumpJson(header, -1);
  text.resize((text.size() + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment, ' ');
  uint8_t size_prefix[8];
  for (int i = 0; i < 8; ++i) size_prefix[i] = static_cast<uint8_t>(text.size() >> (8 * i));

  std::vector<std::span<const uint8_t>> pieces = {size_prefix, AsBytes(text)};
  for (const Entry* entry : tensors) pieces.emplace_back(entry->second.bytes);
  return WriteFileAtomically(path, pieces);
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  std::vector<const Entry*> all;
  for (const Entry& entry : tensors_) all.push_back(&entry);
  return WriteTensors(path, std::move(all));
}

absl::Status SafetensorsWriter::WriteCheckpoint(const std::string& dir,
                                                int64_t max_shard_bytes) const {
  if (max_shard_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_shard_bytes must be positive, got ", max_shard_bytes));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::ErrnoToStatus(ec.value(), absl::StrCat("cannot create directory '", dir, "'"));
  }
  const std::string single = JoinPath(dir, kSingleFileName);
  const std::string index = JoinPath(dir, kIndexFileName);
  if (total_bytes_ <= max_shard_bytes) {
    RS_RETURN_IF_ERROR(WriteFile(single));
    return RemoveIfPresent(index);
  }

  std::vector<std::vector<const Entry*>> shards(1);
  int64_t shard_bytes = 0;
  for (const Entry& entry : tensors_) {
    const auto bytes = static_cast<int64_t>(entry.second.bytes.size());
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&entry);
    shard_bytes += bytes;
  }
  Json weight_map = Json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string shard_name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    for (const Entry* entry : shards[i]) weight_map[entry->first] = shard_name;
    RS_RETURN_IF_ERROR(WriteTensors(JoinPath(dir, shard_name), shards[i]));
  }
  const Json index_json = {{"metadata", {{"total_size", total_bytes_}}},
                           {"weight_map", std::move(weight_map)}};
  const std::string text = DumpJson(index_json, 2) + "\n";
  const std::span<const uint8_t> pieces[] = {AsBytes(text)};
  RS_RETURN_IF_ERROR(WriteFileAtomically(index, pieces));
  return RemoveIfPresent(single);
}

}  // namespace rackserve::io
