#include "runtime/io/checkpoint.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "runtime/base/status_macros.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts would need byte swaps");

std::string JoinPath(const std::string& dir, std::string_view name) {
  return (fs::path(dir) / fs::path(name)).string();
}

std::string ShapeString(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// A shard name from an index must be a plain file name inside the checkpoint directory.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

// Converts little-endian F32/F16/BF16 elements to float; bytes.size() is out.size() * size.
void DecodeFloats(DType dtype, std::span<const uint8_t> bytes, std::span<float> out) {
  RS_CHECK(IsFloatDType(dtype));
  RS_CHECK(bytes.size() == out.size() * static_cast<size_t>(DTypeSize(dtype)));
  if (dtype == DType::kF32) {
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const auto bits = static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    out[i] = dtype == DType::kF16 ? numerics::Fp16ToFloat(bits) : numerics::Bf16ToFloat(bits);
  }
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open '", path, "'"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::ErrnoToStatus(errno, absl::StrCat("cannot read '", path, "'"));
  return text;
}

// Prefixes `status`'s message with `context`, keeping its code.
absl::Status WithContext(const absl::Status& status, std::string_view context) {
  return absl::Status(status.code(),
                      absl::StrCat(std::string(context), ": ", std::string(status.message())));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint directory '", dir, "' does not exist or is not a directory"));
  }
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint(dir));
  const std::string single = JoinPath(dir, kSingleFileName);
  const std::string index = JoinPath(dir, kIndexFileName);
  if (fs::exists(single, ec)) {
    RS_RETURN_IF_ERROR(checkpoint->AddFile(single));
    return checkpoint;
  }
  if (fs::exists(index, ec)) {
    RS_RETURN_IF_ERROR(checkpoint->AddIndexedShards(index));
    return checkpoint;
  }
  std::vector<std::string> paths;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors") paths.push_back(it->path().string());
  }
  if (ec) {
    return absl::ErrnoToStatus(ec.value(),
                               absl::StrCat("cannot list checkpoint directory '", dir, "'"));
  }
  if (paths.empty()) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory '", dir, "' holds no ",
                                            std::string(kSingleFileName), ", ",
                                            std::string(kIndexFileName), " or *.safetensors file"));
  }
  std::sort(paths.begin(), paths.end());
  for (const std::string& path : paths) RS_RETURN_IF_ERROR(checkpoint->AddFile(path));
  return checkpoint;
}

absl::Status Checkpoint::AddFile(const std::string& path) {
  RS_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  for (const std::string& name : file->TensorNames()) {
    const auto [it, inserted] = tensors_.emplace(name, Entry{file->Find(name), file.get()});
    if (!inserted) {
      return absl::DataLossError(absl::StrCat("checkpoint '", dir_, "': tensor '", name,
                                              "' is in both '", it->second.file->path(), "' and '",
                                              path, "'"));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::Status Checkpoint::AddIndexedShards(const std::string& index_path) {
  RS_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(index_path));
  const Json index = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  const std::string where = absl::StrCat("checkpoint index '", index_path, "'");
  if (index.is_discarded() || !index.is_object()) {
    return absl::DataLossError(absl::StrCat(where, ": not a valid JSON object"));
  }
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return absl::DataLossError(absl::StrCat(where, ": 'weight_map' is missing or not an object"));
  }
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map->items()) {
    const std::string* shard_name = shard.get_ptr<const std::string*>();
    if (shard_name == nullptr || !IsPlainFileName(*shard_name)) {
      return absl::DataLossError(
          absl::StrCat(where, ": weight_map entry of tensor '", tensor,
                       "' is not a file name in the directory: ", shard.dump()));
    }
    shards.insert(*shard_name);
  }
  for (const std::string& shard : shards) {
    const absl::Status status = AddFile(JoinPath(dir_, shard));
    if (!status.ok()) return WithContext(status, absl::StrCat(where, " names shard '", shard, "'"));
  }
  for (const auto& [tensor, shard] : weight_map->items()) {
    const std::string shard_path = JoinPath(dir_, shard.get_ref<const std::string&>());
    const auto it = tensors_.find(tensor);
    if (it == tensors_.end() || it->second.file->path() != shard_path) {
      return absl::DataLossError(absl::StrCat(
          where, " maps tensor '", tensor, "' to '", shard_path, "', which does not hold it",
          it == tensors_.end() ? std::string()
                               : absl::StrCat(" (it is in '", it->second.file->path(), "')")));
    }
  }
  return absl::OkStatus();
}

bool Checkpoint::Has(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<const Checkpoint::Entry*> Checkpoint::Lookup(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", std::string(name), "' not found in checkpoint '", dir_, "'"));
  }
  return &it->second;
}

absl::StatusOr<const TensorView*> Checkpoint::Get(std::string_view name) const {
  RS_ASSIGN_OR_RETURN(const Entry* entry, Lookup(name));
  return entry->view;
}

absl::StatusOr<const TensorView*> Checkpoint::GetChecked(std::string_view name, DType dtype,
                                                         std::span<const int64_t> shape) const {
  RS_ASSIGN_OR_RETURN(const Entry* entry, Lookup(name));
  const TensorView& view = *entry->view;
  if (view.dtype != dtype ||
      !std::equal(view.shape.begin(), view.shape.end(), shape.begin(), shape.end())) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", view.name, "' in '", entry->file->path(), "' is ",
                     std::string(DTypeName(view.dtype)), " ", ShapeString(view.shape),
                     ", expected ", std::string(DTypeName(dtype)), " ", ShapeString(shape)));
  }
  return entry->view;
}

absl::StatusOr<std::vector<float>> Checkpoint::ReadFloat(std::string_view name,
                                                         std::span<const int64_t> shape) const {
  RS_ASSIGN_OR_RETURN(const Entry* entry, Lookup(name));
  const TensorView& view = *entry->view;
  if (!IsFloatDType(view.dtype) ||
      !std::equal(view.shape.begin(), view.shape.end(), shape.begin(), shape.end())) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", view.name, "' in '", entry->file->path(), "' is ",
                     std::string(DTypeName(view.dtype)), " ", ShapeString(view.shape),
                     ", expected F32, F16 or BF16 ", ShapeString(shape)));
  }
  std::vector<float> out(static_cast<size_t>(view.numel()));
  DecodeFloats(view.dtype, view.data, out);
  return out;
}

absl::StatusOr<std::vector<float>> Checkpoint::ReadFloatRows(std::string_view name,
                                                             int64_t row_begin,
                                                             int64_t row_end) const {
  RS_ASSIGN_OR_RETURN(const Entry* entry, Lookup(name));
  const TensorView& view = *entry->view;
  if (!IsFloatDType(view.dtype) || view.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", view.name, "' in '", entry->file->path(), "' is ",
                     std::string(DTypeName(view.dtype)), " ", ShapeString(view.shape),
                     ", expected a 2-D F32, F16 or BF16 tensor"));
  }
  const int64_t rows = view.shape[0];
  const int64_t cols = view.shape[1];
  if (row_begin < 0 || row_begin > row_end || row_end > rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows [", row_begin, ", ", row_end, ") of tensor '", view.name, "' in '",
                     entry->file->path(), "' are out of range: it has ", rows, " rows"));
  }
  const auto element_size = static_cast<size_t>(DTypeSize(view.dtype));
  const auto first = static_cast<size_t>(row_begin * cols);
  std::vector<float> out(static_cast<size_t>((row_end - row_begin) * cols));
  DecodeFloats(view.dtype, view.data.subspan(first * element_size, out.size() * element_size), out);
  return out;
}

std::string Checkpoint::FileOf(std::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? std::string() : it->second.file->path();
}

}  // namespace rackserve::io
