// Priority-queue BPE merge loop; see the header.
#include "models/tokenizer/bpe_merge.h"

#include <queue>
#include <stdexcept>

namespace vitrine::models {
namespace {

struct Symbol {
  size_t begin = 0;  // byte offset in the word
  size_t size = 0;   // 0 once merged into its left neighbour
  int prev = -1;
  int next = -1;
};

struct Candidate {
  double priority = 0;
  int left = 0;
  int right = 0;
  size_t size = 0;  // left.size + right.size when scored; stale if it changed
};

struct WorseCandidate {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.left > b.left;
  }
};

}  // namespace

std::vector<std::string_view> bpe_merge(std::string_view word,
                                        std::span<const uint32_t> initial_lengths,
                                        const BpePairPriority& priority) {
  std::vector<Symbol> symbols;
  symbols.reserve(initial_lengths.size());
  size_t offset = 0;
  for (const uint32_t length : initial_lengths) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({offset, length, index - 1, index + 1});
    offset += length;
  }
  if (offset != word.size())
    throw std::logic_error("bpe_merge: symbol lengths do not cover the word");
  if (!symbols.empty()) symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, WorseCandidate> agenda;
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const auto p = priority(word.substr(l.begin, l.size), word.substr(r.begin, r.size));
    if (p) agenda.push({*p, left, right, l.size + r.size});
  };
  for (size_t i = 1; i < symbols.size(); ++i)
    consider(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& l = symbols[top.left];
    Symbol& r = symbols[top.right];
    if (l.size == 0 || r.size == 0 || l.next != top.right || l.size + r.size != top.size) continue;
    l.size += r.size;
    r.size = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = top.left;
    consider(l.prev, top.left);
    consider(top.left, l.next);
  }

  std::vector<std::string_view> out;
  for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next)
    out.push_back(word.substr(symbols[i].begin, symbols[i].size));
  return out;
}

}  // namespace vitrine::models
