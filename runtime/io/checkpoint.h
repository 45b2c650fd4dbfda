// Checkpoint: the tensors of a model directory, read from one or more safetensors files.
//
// Open picks the layout the way Hugging Face loaders do:
//   1. dir/model.safetensors                          a single file;
//   2. dir/model.safetensors.index.json               {"weight_map": {tensor: shard file}, ...}
//      plus every shard file it names (plain file names inside dir);
//   3. otherwise every dir/*.safetensors, as long as there is at least one and no tensor name
//      appears in two of them.
// With an index, every tensor it lists must be in the shard it names; tensors a shard holds
// beyond the index are served too. A name present in two files is always an error.
// Errors (each names the directory or file and, where there is one, the tensor):
//   NOT_FOUND   dir missing or holding no safetensors file; a shard the index names is missing;
//               Get of an absent tensor
//   DATA_LOSS   a malformed index or shard (see SafetensorsFile); a tensor the index maps to a
//               shard that lacks it; the same tensor in two files
//   INVALID_ARGUMENT  GetChecked / ReadFloat / ReadFloatRows asked for a dtype, shape or row
//               range the tensor does not have
//
// The Checkpoint owns the memory maps: TensorView pointers and spans it returns are valid
// while it lives. Immutable after Open, hence thread-safe; not copyable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/io/dtype.h"
#include "runtime/io/safetensors_file.h"
#include "runtime/io/tensor_view.h"

namespace rackserve::io {

inline constexpr std::string_view kSingleFileName = "model.safetensors";
inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::string& dir() const { return dir_; }
  bool Has(std::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;

  // NOT_FOUND naming the tensor and the directory when absent.
  absl::StatusOr<const TensorView*> Get(std::string_view name) const;
  // Get, then INVALID_ARGUMENT naming file, tensor, expected and actual when the dtype or the
  // shape differs.
  absl::StatusOr<const TensorView*> GetChecked(std::string_view name, DType dtype,
                                               std::span<const int64_t> shape) const;
  // An F32/F16/BF16 tensor of exactly `shape`, converted to float (row-major). Other dtypes
  // and other shapes are INVALID_ARGUMENT.
  absl::StatusOr<std::vector<float>> ReadFloat(std::string_view name,
                                               std::span<const int64_t> shape) const;
  // Rows [row_begin, row_end) of a 2-D F32/F16/BF16 tensor [rows, cols], converted to float:
  // (row_end - row_begin) * cols values. INVALID_ARGUMENT for another rank or dtype, or
  // unless 0 <= row_begin <= row_end <= rows.
  absl::StatusOr<std::vector<float>> ReadFloatRows(std::string_view name, int64_t row_begin,
                                                   int64_t row_end) const;
  // Path of the file holding the tensor; "" when there is none.
  std::string FileOf(std::string_view name) const;

 private:
  struct Entry {
    const TensorView* view;
    const SafetensorsFile* file;
  };

  explicit Checkpoint(std::string dir) : dir_(std::move(dir)) {}

  // Opens `path` and adds all its tensors; DATA_LOSS when one is already present.
  absl::Status AddFile(const std::string& path);
  // Layout 2: reads the index, opens the shards it names and checks the weight map.
  absl::Status AddIndexedShards(const std::string& index_path);
  // The entry of `name`; NOT_FOUND naming it and dir_.
  absl::StatusOr<const Entry*> Lookup(std::string_view name) const;

  const std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace rackserve::io
