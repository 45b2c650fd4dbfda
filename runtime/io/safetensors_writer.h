// SafetensorsWriter: collects tensors in memory, then writes them as one safetensors file or
// as a Hugging Face style (possibly sharded) checkpoint directory that Checkpoint reads.
//
// Files it writes: the JSON header is padded with spaces to a multiple of 8 bytes; tensors are
// stored contiguously (no gaps, as the reference implementation requires), ordered by element
// size, largest first, then by name, so every tensor starts aligned to its element size. The
// "__metadata__" entry is written only when metadata was set (Hugging Face transformers wants
// {"format": "pt"}). Writes are atomic: a temporary file in the same directory, fsync, rename.
//
// Errors: INVALID_ARGUMENT for a bad name (empty, "__metadata__", or not printable ASCII), a
// negative or overflowing shape, or a byte/value count that does not match the shape;
// ALREADY_EXISTS for a name added twice; file system failures map from errno (NOT_FOUND,
// PERMISSION_DENIED, RESOURCE_EXHAUSTED for a full disk, ...) and name the path.
//
// Not thread-safe: use from one thread at a time (the const Write* methods may run
// concurrently with each other).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/io/dtype.h"

namespace rackserve::io {

class SafetensorsWriter {
 public:
  // Sets a "__metadata__" entry, replacing an earlier value of `key`. Bytes that are not valid
  // UTF-8 are written as U+FFFD.
  void SetMetadata(std::string key, std::string value);

  // Adds a tensor from its little-endian bytes: exactly numel * DTypeSize(dtype) of them.
  absl::Status Add(std::string name, DType dtype, std::vector<int64_t> shape,
                   std::vector<uint8_t> bytes);
  // Adds an F32 / F16 / BF16 tensor from numel floats; F16 and BF16 round to nearest-even.
  absl::Status AddF32(std::string name, std::vector<int64_t> shape, std::span<const float> values);
  absl::Status AddF16(std::string name, std::vector<int64_t> shape, std::span<const float> values);
  absl::Status AddBf16(std::string name, std::vector<int64_t> shape, std::span<const float> values);

  // Sum of the tensors' data bytes (headers not included).
  int64_t total_bytes() const { return total_bytes_; }

  // Writes every tensor to `path`.
  absl::Status WriteFile(const std::string& path) const;

  // Writes the checkpoint into `dir` (created if missing). When total_bytes() fits in
  // max_shard_bytes: dir/model.safetensors. Otherwise shards model-00001-of-0000N.safetensors,
  // filled in name order up to max_shard_bytes each (a larger tensor gets a shard of its own),
  // plus model.safetensors.index.json {"metadata": {"total_size": total_bytes()},
  // "weight_map": {tensor: shard}}. Removes the entry file of the other layout if present, so
  // that Checkpoint::Open reads what was just written. INVALID_ARGUMENT if max_shard_bytes <= 0.
  absl::Status WriteCheckpoint(const std::string& dir, int64_t max_shard_bytes) const;

 private:
  struct Tensor {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  using Entry = std::map<std::string, Tensor>::value_type;

  // Checks name and shape; returns the tensor's byte size.
  absl::StatusOr<int64_t> CheckNewTensor(const std::string& name, DType dtype,
                                         const std::vector<int64_t>& shape) const;
  // Encodes `values` as `dtype` (F32/F16/BF16) after checking their count, then Add.
  absl::Status AddFloats(std::string name, DType dtype, std::vector<int64_t> shape,
                         std::span<const float> values);
  // Writes `tensors` as one safetensors file at `path`.
  absl::Status WriteTensors(const std::string& path, std::vector<const Entry*> tensors) const;

  std::map<std::string, std::string> metadata_;
  std::map<std::string, Tensor> tensors_;
  int64_t total_bytes_ = 0;
};

}  // namespace rackserve::io
