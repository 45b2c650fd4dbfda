// ProgressBar: a one-line terminal progress bar on stderr with rate and ETA, redrawn at most
// ten times a second. Thread-compatible (callers serialize Update calls).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rackserve::tools {

class ProgressBar {
 public:
  // `label` starts the line ("quantize"); `unit` names what is counted ("tensors").
  ProgressBar(std::string label, std::string unit);
  void Update(int64_t done, int64_t total);
  // Draws the final state and ends the line (no-op if nothing was drawn).
  void Finish();

 private:
  void Draw();

  std::string label_;
  std::string unit_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  int64_t done_ = 0;
  int64_t total_ = 0;
  bool drawn_ = false;
  int64_t drawn_done_ = -1;  // done_ at the last draw
};

}  // namespace rackserve::tools
