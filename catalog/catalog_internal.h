// Internals shared by the catalogue's writer (catalog.cc) and reader
// (catalog_search.cc): constants, the stop-word list, title keys, the FTS5
// tokenizer wrapper and FTS5 query helpers. Not part of the API; SQLite
// connections and statements are common/sqlite.h's.
#pragma once

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "catalog/catalog.h"
#include "common/sqlite.h"

namespace vitrine::catalog::internal {

constexpr int kApplicationId = 0x56495452;  // "VITR"
constexpr int kFormatVersion = 1;
constexpr std::string_view kReservedPrefix = "catalog.";
constexpr size_t kMaxWordingWords = 48;  // words of the wording considered at all
constexpr size_t kMaxLookups = 24;       // identifying words whose frequency is looked up
constexpr size_t kMaxTerms = 12;         // rarest known words that may go into FTS5 queries
constexpr size_t kMaxRunWords = 10;      // identifying words whose runs are looked up as titles
constexpr int kRunMatches = 10;          // products taken per title that is a part of the wording
constexpr size_t kAndTerms = 3;          // rarest words that must all be in a title (grows by this)
constexpr size_t kPairTerms = 3;         // rarest words of which any two must be in a title
constexpr int kCandidates = 50;          // rows taken from each FTS5 query for re-ranking
constexpr double kQueryCoverageWeight = 0.7;  // see CatalogMatch
// A wording word no title has still counts against every title, at this
// share of the rarest known word's weight: "the battery life of the
// zq-9000 hyperdrive" is not "A Traveller's Life" for sharing "life".
// Not the full weight, since unknown words are often typos or filler.
constexpr double kUnknownWordWeight = 0.25;
static_assert(kMaxLookups <= 32, "rank() keeps found words in a 32-bit mask");

// Words that say nothing about which product is meant, folded as unicode61
// folds them ("é" -> "e", "você" -> "voce").
inline bool is_stop_word(std::string_view word) {
  static const std::unordered_set<std::string_view> words = {
      // English: articles, pronouns, prepositions, question and request words
      "a", "about", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "describe",
      "details", "do", "does", "explain", "for", "from", "give", "has", "have", "hello", "hi",
      "how", "i", "in", "info", "information", "is", "it", "its", "know", "me", "more", "my", "of",
      "on", "or", "please", "s", "say", "show", "some", "summarize", "tell", "that", "the", "their",
      "there", "these", "this", "those", "to", "us", "was", "we", "were", "what", "whats", "when",
      "where", "which", "who", "whom", "whose", "why", "will", "with", "would", "you", "your",
      // Portuguese
      "ao", "aos", "com", "como", "conte", "da", "das", "de", "descreva", "detalhes", "diga", "dos",
      "e", "eh", "ela", "ele", "em", "essa", "esse", "esta", "este", "explique", "fale", "favor",
      "informacao", "informacoes", "mais", "mim", "na", "nas", "no", "nos", "o", "os", "para",
      "pode", "poderia", "por", "qual", "quais", "quando", "que", "quem", "sao", "se", "ser",
      "sobre", "um", "uma", "umas", "uns", "voce"};
  return words.count(word) > 0;
}

// Hash of a title's identifying words in order (FNV-1a, a 0 byte after each
// word); of all its words when every one is a stop word.
class TitleKey {
 public:
  static uint64_t hash(std::string_view word) {
    uint64_t h = kSeed;
    mix(h, word);
    return h;
  }
  void add(std::string_view word) {
    const bool stop = is_stop_word(word);
    mix(all_, word);
    if (!stop) mix(identity_, word);
    any_identity_ |= !stop;
  }
  int64_t value() const { return static_cast<int64_t>(any_identity_ ? identity_ : all_); }

 private:
  static constexpr uint64_t kSeed = 0xcbf29ce484222325ULL;
  static void mix(uint64_t& hash, std::string_view word) {
    for (unsigned char c : word) hash = (hash ^ c) * 0x100000001b3ULL;
    hash *= 0x100000001b3ULL;
  }
  uint64_t identity_ = kSeed, all_ = kSeed;
  bool any_identity_ = false;
};

// The FTS5 unicode61 tokenizer with the index's arguments, so that titles
// and wordings are cut and folded exactly as the index cuts them.
class Words {
 public:
  explicit Words(const sql::Database& db) {
    // fts5(?1) hands out the API through a pointer binding, which
    // sql::Statement does not wrap; a failure here means no FTS5 at all.
    fts5_api* api = nullptr;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db.handle(), "SELECT fts5(?1)", -1, &stmt, nullptr) == SQLITE_OK) {
      sqlite3_bind_pointer(stmt, 1, &api, "fts5_api_ptr", nullptr);
      sqlite3_step(stmt);
    }
    sqlite3_finalize(stmt);
    void* context = nullptr;
    const char* args[] = {"remove_diacritics", "2"};
    if (!api || api->xFindTokenizer(api, "unicode61", &context, &api_) != SQLITE_OK ||
        api_.xCreate(context, args, 2, &instance_) != SQLITE_OK) {
      throw std::runtime_error(
          fmt::format("{}: this SQLite has no FTS5 unicode61 tokenizer", db.context()));
    }
  }
  ~Words() { api_.xDelete(instance_); }
  Words(const Words&) = delete;
  Words& operator=(const Words&) = delete;

  // Calls f(word) for each folded word of `text` while f returns true; the
  // view is valid only during the call.
  template <class F>
  void for_each(std::string_view text, F&& f) {
    for_each_span(text, [&](std::string_view word, size_t, size_t) { return f(word); });
  }
  // The same, with the bytes of `text` the word came from: f(word, begin, end).
  template <class F>
  void for_each_span(std::string_view text, F&& f) {
    using Fn = std::remove_reference_t<F>;
    auto trampoline = [](void* raw, int, const char* token, int n, int begin, int end) -> int {
      return (*static_cast<Fn*>(raw))(std::string_view(token, static_cast<size_t>(n)),
                                      static_cast<size_t>(begin), static_cast<size_t>(end))
                 ? SQLITE_OK
                 : SQLITE_DONE;
    };
    api_.xTokenize(instance_, &f, FTS5_TOKENIZE_DOCUMENT, text.data(),
                   static_cast<int>(text.size()), trampoline);
  }

 private:
  fts5_tokenizer api_{};
  Fts5Tokenizer* instance_ = nullptr;
};

// FTS5 string literal: double quotes, inner quotes doubled.
inline std::string fts5_string(std::string_view term) {
  std::string out = "\"";
  for (char c : term) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// BM25's inverse document frequency; always > 0.
inline double idf(int64_t n_docs, int64_t df) {
  return std::log(1.0 + (static_cast<double>(n_docs - df) + 0.5) / (static_cast<double>(df) + 0.5));
}

// Percent-encodes a path for an SQLite URI filename.
inline std::string uri_path(const std::filesystem::path& path) {
  std::string out;
  for (unsigned char c : std::filesystem::absolute(path).string()) {
    const bool plain = c >= 0x20 && c < 0x7f && c != '%' && c != '?' && c != '#';
    out += plain ? std::string(1, static_cast<char>(c)) : fmt::format("%{:02X}", c);
  }
  return out;
}

}  // namespace vitrine::catalog::internal
