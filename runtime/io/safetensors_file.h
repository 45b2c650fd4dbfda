// SafetensorsFile: one safetensors file, validated and memory-mapped read-only.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 N, N bytes
// of UTF-8 JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// plus an optional "__metadata__" object of string -> string, then the data region. Offsets
// are byte offsets relative to the start of the data region.
//
// Open validates the whole header before returning, so every TensorView it hands out lies
// inside the file, has exactly numel * dtype-size bytes and overlaps no other tensor; gaps
// between tensors are allowed. Errors name the file and, where there is one, the tensor:
//   NOT_FOUND         the file does not exist (other open/mmap failures map from errno)
//   DATA_LOSS         truncated or corrupt: short file, header size past the end or above
//                     kMaxHeaderBytes, malformed JSON, missing or mistyped fields, negative
//                     dims, bad or overlapping offsets, byte count != numel * dtype size,
//                     a name listed twice
//   INVALID_ARGUMENT  the path is not a regular file, or a tensor has a dtype rackserve does
//                     not support (the file may be fine; convert it)
//
// The mapping is MAP_PRIVATE, PROT_READ and released by the destructor. The file must not be
// truncated while it is open (reading a truncated mapping raises SIGBUS). Immutable after
// Open, hence thread-safe; not copyable or movable (views point into it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/io/tensor_view.h"

namespace rackserve::io {

class SafetensorsFile {
 public:
  // Headers larger than this are rejected as corrupt (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names, sorted.
  std::vector<std::string> TensorNames() const;
  // The tensor called `name`, or nullptr when the file has none. Valid while *this lives.
  const TensorView* Find(std::string_view name) const;
  // The "__metadata__" entries (empty when the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile(std::string path, void* map, size_t map_size);

  // Parses and validates the header of the mapped file, filling tensors_ and metadata_.
  absl::Status ParseHeader();

  const std::string path_;
  void* const map_;        // the whole file, PROT_READ
  const size_t map_size_;  // bytes mapped: the file size, at least 8
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace rackserve::io
