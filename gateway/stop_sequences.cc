// Stop sequences over whole and streamed text (see stop_sequences.h).
#include "gateway/stop_sequences.h"

#include <algorithm>
#include <utility>

namespace vitrine::gateway {

namespace {

// Where the stop sequence that ends first in `text` starts (of two ending
// together, the longer), or npos.
size_t first_stop(std::string_view text, const std::vector<std::string>& stops) {
  size_t start = std::string_view::npos, end = std::string_view::npos;
  for (const std::string& s : stops) {
    const size_t at = text.find(s);
    if (at == std::string_view::npos) continue;
    if (at + s.size() < end || (at + s.size() == end && at < start)) {
      start = at;
      end = at + s.size();
    }
  }
  return start;
}

}  // namespace

bool cut_at_stop(std::string& text, const std::vector<std::string>& stops) {
  const size_t at = first_stop(text, stops);
  if (at == std::string::npos) return false;
  text.resize(at);
  return true;
}

StopCutter::StopCutter(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopCutter::push(std::string_view piece) {
  if (stopped_) return {};
  pending_.append(piece);
  if (const size_t at = first_stop(pending_, stops_); at != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, at);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that some stop sequence begins with: any
  // stop that starts earlier would already have been found whole.
  size_t longest = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(pending_.size(), s.size() - 1); k > longest; --k) {
      if (std::string_view(pending_).substr(pending_.size() - k) ==
          std::string_view(s).substr(0, k)) {
        longest = k;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - longest);
  pending_.erase(0, pending_.size() - longest);
  return out;
}

std::string StopCutter::finish() {
  return std::exchange(pending_, std::string());
}

size_t complete_utf8_prefix(std::string_view text) {
  // Look back at most 3 bytes for the lead byte of the last sequence.
  for (size_t back = 1; back <= std::min<size_t>(3, text.size()); ++back) {
    const auto c = static_cast<unsigned char>(text[text.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? text.size() - back : text.size();
  }
  return text.size();  // only continuation bytes: not ours to fix
}

}  // namespace vitrine::gateway
