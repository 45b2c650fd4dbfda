// Test helpers for runtime/io: a fresh temporary directory per test, and raw file writing for
// hand-crafted (possibly corrupt) safetensors files.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace rackserve::io::testing {

// A new empty directory under ::testing::TempDir(), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "rackserve_io_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed: " << pattern;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

inline void WriteBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A safetensors file image: u64 little-endian header size, then `header`, then `data`.
inline std::string SafetensorsImage(std::string_view header, std::string_view data,
                                    uint64_t header_size) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(header_size >> (8 * i)));
  out.append(header);
  out.append(data);
  return out;
}

inline std::string SafetensorsImage(std::string_view header, std::string_view data) {
  return SafetensorsImage(header, data, header.size());
}

}  // namespace rackserve::io::testing
