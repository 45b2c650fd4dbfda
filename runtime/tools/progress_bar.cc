#include "runtime/tools/progress_bar.h"

#include <cstdio>

namespace rackserve::tools {

ProgressBar::ProgressBar(std::string label, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::Update(int64_t done, int64_t total) {
  done_ = done;
  total_ = total;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  Draw();
}

void ProgressBar::Finish() {
  if (!drawn_) return;
  if (drawn_done_ != done_) Draw();
  std::fputc('\n', stderr);
}

void ProgressBar::Draw() {
  constexpr int kWidth = 30;
  const double fraction = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld %s  %.1f %s/s  ETA %.0f s ", label_.c_str(),
               filled, "##############################", kWidth - filled, "",
               static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(), rate,
               unit_.c_str(), eta);
  std::fflush(stderr);
  drawn_ = true;
  drawn_done_ = done_;
}

}  // namespace rackserve::tools
