#include "training/text_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <unordered_set>

namespace vitrine::training {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Counts of the n-grams of `tokens`.
std::map<std::vector<std::string>, int64_t> ngrams(const std::vector<std::string>& tokens,
                                                   size_t n) {
  std::map<std::vector<std::string>, int64_t> out;
  for (size_t i = 0; i + n <= tokens.size(); ++i) {
    ++out[std::vector<std::string>(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                                   tokens.begin() + static_cast<std::ptrdiff_t>(i + n))];
  }
  return out;
}

// Clipped matches of candidate n-grams against the reference's.
int64_t overlap(const std::map<std::vector<std::string>, int64_t>& reference,
                const std::map<std::vector<std::string>, int64_t>& candidate) {
  int64_t matches = 0;
  for (const auto& [gram, count] : candidate) {
    const auto it = reference.find(gram);
    if (it != reference.end()) matches += std::min(count, it->second);
  }
  return matches;
}

double f1(double matches, double reference_total, double candidate_total) {
  if (matches == 0 || reference_total == 0 || candidate_total == 0) return 0;
  const double precision = matches / candidate_total, recall = matches / reference_total;
  return 2 * precision * recall / (precision + recall);
}

size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<size_t> previous(b.size() + 1, 0), current(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      current[j] =
          a[i - 1] == b[j - 1] ? previous[j - 1] + 1 : std::max(previous[j], current[j - 1]);
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::vector<std::string> split_spaces(const std::string& text) {
  std::vector<std::string> out;
  std::string token;
  for (const char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      if (!token.empty()) out.push_back(std::move(token));
      token.clear();
    } else {
      token.push_back(c);
    }
  }
  if (!token.empty()) out.push_back(std::move(token));
  return out;
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

// mteval-v13a's punctuation class: { | } ~ [ \ ] ^ _ ` space ! " # $ % &
// ( ) * + : ; < = > ? @ /
bool is_13a_symbol(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// Words as content_words reads them: runs of ASCII letters, digits or
// non-ASCII bytes, ASCII-lowercased.
std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((c >= 'a' && c <= 'z') || is_digit(c) || u >= 0x80) {
      word.push_back(c);
    } else if (c >= 'A' && c <= 'Z') {
      word.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if (!word.empty()) {
      out.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

// English and Portuguese function words, and the answer lead-ins' words.
const std::unordered_set<std::string_view>& stopwords() {
  static const std::unordered_set<std::string_view> kWords = {
      // English
      "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with",
      "from", "as", "into", "about", "than", "then", "so", "not", "no", "is", "are", "was", "were",
      "be", "been", "being", "am", "do", "does", "did", "has", "have", "had", "will", "would",
      "can", "could", "should", "may", "might", "must", "shall", "it", "its", "this", "that",
      "these", "those", "he", "she", "they", "we", "you", "i", "me", "him", "her", "his", "hers",
      "them", "their", "our", "your", "my", "who", "whom", "whose", "which", "what", "when",
      "where", "why", "how", "all", "any", "each", "more", "most", "other", "some", "such", "there",
      "here", "also", "just", "only", "very", "s", "t",
      // Portuguese
      "o", "os", "as", "um", "uma", "uns", "umas", "de", "do", "da", "dos", "das", "em", "no", "na",
      "nos", "nas", "por", "pelo", "pela", "pelos", "pelas", "para", "com", "sem", "sobre", "e",
      "ou", "mas", "se", "que", "não", "é", "são", "foi", "ser", "está", "estão", "ter", "tem",
      "têm", "ao", "aos", "à", "às", "ele", "ela", "eles", "elas", "seu", "sua", "seus", "suas",
      "este", "esta", "esse", "essa", "isso", "isto", "qual", "quais", "como", "quando", "onde",
      "mais", "muito", "também", "já", "me", "você", "lhe",
      // the dataset's answer lead-ins (dataset/tasks.h): no fact in them
      "according", "description", "says", "segundo", "descrição", "acordo"};
  return kWords;
}

}  // namespace

std::vector<std::string> content_words(std::string_view text) {
  std::vector<std::string> out = words_of(text);
  std::erase_if(out, [](const std::string& w) { return stopwords().contains(w); });
  return out;
}

std::optional<double> faithfulness(std::string_view answer, std::string_view description) {
  const std::vector<std::string> content = content_words(answer);
  if (content.empty()) return std::nullopt;
  const std::vector<std::string> source = words_of(description);
  const std::unordered_set<std::string_view> known(source.begin(), source.end());
  const auto found = std::count_if(content.begin(), content.end(),
                                   [&](const std::string& w) { return known.contains(w); });
  return static_cast<double>(found) / static_cast<double>(content.size());
}

std::vector<std::string> rouge_tokens(std::string_view text) {
  std::string lowered;
  for (const char c : text) {
    const char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    lowered.push_back((l >= 'a' && l <= 'z') || is_digit(l) ? l : ' ');
  }
  return split_spaces(lowered);
}

RougeScores rouge(std::string_view reference, std::string_view candidate) {
  const auto ref = rouge_tokens(reference), cand = rouge_tokens(candidate);
  RougeScores s;
  for (const size_t n : {1, 2}) {
    const auto r = ngrams(ref, n), c = ngrams(cand, n);
    const double total_r = ref.size() >= n ? static_cast<double>(ref.size() - n + 1) : 0;
    const double total_c = cand.size() >= n ? static_cast<double>(cand.size() - n + 1) : 0;
    (n == 1 ? s.rouge1 : s.rouge2) = f1(static_cast<double>(overlap(r, c)), total_r, total_c);
  }
  s.rougeL = f1(static_cast<double>(lcs_length(ref, cand)), static_cast<double>(ref.size()),
                static_cast<double>(cand.size()));
  return s;
}

std::vector<std::string> bleu_13a_tokens(std::string_view text) {
  std::string line(text);
  line = replace_all(line, "<skipped>", "");
  line = replace_all(line, "-\n", "");
  std::replace(line.begin(), line.end(), '\n', ' ');
  if (line.find('&') != std::string::npos) {
    line = replace_all(line, "&quot;", "\"");
    line = replace_all(line, "&amp;", "&");
    line = replace_all(line, "&lt;", "<");
    line = replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // The four substitutions of mteval-v13a, each a left-to-right pass like re.sub.
  std::string a;
  for (const char c : line) {
    if (is_13a_symbol(c)) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  std::string b;  // ([^0-9])([\.,]) -> \1 \2 (space after)
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !is_digit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i];
      b += ' ';
      b += a[i + 1];
      b += ' ';
      i += 2;
    } else {
      b += a[i++];
    }
  }
  std::string c;  // ([\.,])([^0-9]) -> ' \1 \2'
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !is_digit(b[i + 1])) {
      c += ' ';
      c += b[i];
      c += ' ';
      c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  std::string d;  // ([0-9])(-) -> \1 \2 (space after)
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == '-') {
      d += c[i];
      d += " - ";
      i += 2;
    } else {
      d += c[i++];
    }
  }
  return split_spaces(d);
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size()) {
    throw std::invalid_argument("corpus_bleu: one reference per hypothesis");
  }
  int64_t matches[4] = {}, totals[4] = {};
  BleuScore s;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const auto hyp = bleu_13a_tokens(hypotheses[i]), ref = bleu_13a_tokens(references[i]);
    s.hypothesis_length += static_cast<int64_t>(hyp.size());
    s.reference_length += static_cast<int64_t>(ref.size());
    for (size_t n = 1; n <= 4; ++n) {
      matches[n - 1] += overlap(ngrams(ref, n), ngrams(hyp, n));
      totals[n - 1] += hyp.size() >= n ? static_cast<int64_t>(hyp.size() - n + 1) : 0;
    }
  }
  if (s.hypothesis_length == 0) return s;
  double smooth = 1, log_sum = 0;
  for (int n = 0; n < 4; ++n) {
    if (totals[n] == 0) {
      s.precisions[n] = 0;
    } else if (matches[n] == 0) {
      smooth *= 2;  // sacreBLEU's 'exp' smoothing
      s.precisions[n] = 100.0 / (smooth * static_cast<double>(totals[n]));
    } else {
      s.precisions[n] = 100.0 * static_cast<double>(matches[n]) / static_cast<double>(totals[n]);
    }
    log_sum += s.precisions[n] > 0 ? std::log(s.precisions[n]) : -9999999999.0;
  }
  s.brevity_penalty = s.hypothesis_length >= s.reference_length
                          ? 1.0
                          : std::exp(1.0 - static_cast<double>(s.reference_length) /
                                               static_cast<double>(s.hypothesis_length));
  s.score = s.brevity_penalty * std::exp(log_sum / 4);
  return s;
}

}  // namespace vitrine::training
