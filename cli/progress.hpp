// A one-line progress bar on stderr, e.g. "[#####.....]  50% fused rep 3/10". It draws only when
// stderr is a terminal and the output is not JSON, so pipes and logs stay clean.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace longattn::cli {

class Progress {
 public:
  explicit Progress(bool wanted) : enabled_(wanted && isatty(STDERR_FILENO)) {}
  ~Progress() { clear(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void show(double fraction, const std::string& label) {
    if (!enabled_) return;
    // A redraw per fast repetition would flood slow terminals; ten a second reads as smooth.
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    constexpr int kWidth = 30;
    fraction = std::clamp(fraction, 0.0, 1.0);
    int filled = static_cast<int>(fraction * kWidth + 0.5);
    std::string bar(size_t(filled), '#');
    bar.resize(kWidth, '.');
    // \r returns to the line start, \033[K erases what a longer previous label left behind.
    std::fprintf(stderr, "\r[%s] %3d%% %s\033[K", bar.c_str(), static_cast<int>(fraction * 100),
                 label.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  // Erases the bar, so results printed next start on a clean line.
  void clear() {
    if (!drawn_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace longattn::cli
