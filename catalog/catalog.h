// The product catalogue, catalog.sqlite: every kept product, and a title
// search that finds "which product is this user talking about".
//
// CatalogWriter is fed once by `vitrine prepare` (~1.35M products) and
// builds an SQLite file: a `products` table keyed by uid, a `meta` table
// (dataset fingerprint, config, seed, version), an external-content FTS5
// index over the titles (unicode61, diacritics removed), a table of word
// frequencies and a table of title keys (a hash of each title's identifying
// words). The same add()/set_meta() calls give a byte-identical file.
//
// Catalog opens such a file read-only and answers find_by_title() from a
// user's noisy wording of a title (lowercase, no punctuation, words dropped
// or added, wrapped in a question, in English or Portuguese) in well under a
// millisecond. User text never reaches FTS5 syntax: it is cut into words by
// the index's own tokenizer and every word is quoted.
//
// find_title_in_text() then says where in a text a title sits, for the
// router to tell a title from a question around one.
//
// Not goals: typo tolerance in the search (the alignment tolerates typos
// only in titles it was given), stemming, semantic search, searching
// descriptions (index_content only builds their index), updating a catalogue
// in place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/product.h"

namespace vitrine::catalog {

struct CatalogOptions {
  bool index_content = false;  // also FTS-index descriptions (column `content` of products_fts),
                               // for description search in SQL: on 1.35M products the file grows
                               // by 0.33 GB (+30%) and finish() takes 31 s instead of 4 s
  int page_size = 16384;       // SQLite page size: 9% smaller file than 4096 (less slack around
                               // ~700-byte rows), same build time and lookup latency (measured)
  int cache_mib = 64;          // SQLite page cache of the writer; more only adds page faults
  int index_memory_mib = 64;   // FTS5 pending-index memory ('hashsize') while finish() indexes:
                               // more means fewer segments to merge, a slightly faster finish()
};

// One product as stored, with owning strings.
struct StoredProduct {
  std::string uid;
  std::string title;
  std::string content;
  std::string split;  // split_name(): "train", "validation" or "test"
  std::string lang;   // ISO 639-1 code or "unknown"
  uint64_t line = 0;  // 1-based line in the input file
};

// A title search hit. `score` is in [0, 1], higher is better, comparable
// between queries:
//   0.7 * (share of the wording's words that the title has, each word
//          weighted by its rarity among titles (idf); a word no title
//          has weighs half as much as the rarest, and no title has it)
//   + 0.3 * (share of the title's distinct words that the wording has)
// with stop words ("the", "what", "about", "o", "que", "sobre", ...) left out
// of both sides unless they are all there is. 1 means the wording and the
// title have the same identifying words.
struct CatalogMatch {
  std::string uid;
  std::string title;
  double score = 0;
};

// Where a catalogue title sits in a user's text (Catalog::find_title_in_text):
// the words of the text that are the title as typed, and the words around it.
struct TitleInText {
  std::string uid;
  std::string title;
  double search_score = 0;                // the title's CatalogMatch::score for the whole text
  int text_words = 0;                     // words of the text (as the index cuts them)
  int words_before = 0, words_after = 0;  // text words before and after the title
  size_t byte_begin = 0, byte_end = 0;    // the title in the text: its first word's first byte
                                          // to its last word's end (and the title's own '?' or
                                          // '!' after it, when the text has it there too)
  int title_words = 0;      // identifying words (all words when every one is a stop word) of
                            // the main title (before ':', ' (', ' - ', ' [') when the text
                            // stays within it, else of the whole title
  int matched_words = 0;    // of them, in the text (typos included)
  double coverage = 0;      // matched_words / title_words: "City of Djinns" covers all of
                            // "City of Djinns: A Year in Delhi"
  bool from_start = false;  // no identifying word of the title comes before the matched ones
  int typos = 0;            // matched words that are typos of the title's
};

// Writes a NEW catalogue at `path` (which must not exist). Single-threaded.
// A throwing call leaves the writer unusable: destroy it and delete the file.
class CatalogWriter {
 public:
  CatalogWriter(const std::filesystem::path& path, CatalogOptions options = {});
  // Without finish(): closes the database and leaves the (incomplete) file,
  // which Catalog refuses to open, for the caller to delete.
  ~CatalogWriter();
  CatalogWriter(const CatalogWriter&) = delete;
  CatalogWriter& operator=(const CatalogWriter&) = delete;

  // Stores one product (~5 us); ids follow the order of the calls. Throws
  // std::runtime_error naming the uid when it was added before.
  void add(const Product& product);
  // Records a key/value pair (a later call with the same key replaces it).
  // Keys starting with "catalog." are reserved for the writer.
  void set_meta(std::string_view key, std::string_view value);
  // Builds the FTS5 index and the lookup tables, commits and closes.
  // Throws std::runtime_error on any SQLite error.
  void finish();
  // Products added so far.
  int64_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A read-only catalogue, shared between threads: each call runs on one of
// up to `max_connections` SQLite connections of its own (opened when every
// open one is busy), so that as many calls run at once; more wait for a
// connection. One connection makes calls run one at a time, and a call
// whose thread is preempted holds up every other (the daemon's router, qa
// and describe agents all search the same catalogue on gRPC's threads).
class Catalog {
 public:
  // Connections at most by default: more than a server's cores gain nothing.
  static constexpr int kDefaultConnections = 8;

  // Throws std::runtime_error when the file is missing, is not an SQLite
  // database, is not a vitrine catalogue (or one of another format version)
  // or was never finished; std::invalid_argument for max_connections < 1.
  explicit Catalog(const std::filesystem::path& path, int max_connections = kDefaultConnections);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // The best `limit` products whose title matches the user's wording, best
  // first; equal scores: the title more of whose words (stop words too) the
  // wording has, then the earlier added. When the wording's identifying
  // words are exactly a title's, the search stops there: the result holds
  // the titles with those words (score 1) and titles made of its first
  // words, no other near matches. Never throws on user text: empty,
  // meaningless or hostile wording gives an empty result.
  std::vector<CatalogMatch> find_by_title(std::string_view wording, int limit = 5) const;

  // The products (at most `limit`, earliest added first, score 1) whose
  // title is `text` exactly, up to ASCII case, runs of white space and
  // trailing question marks: "who moved my cheese" and "Who  Moved My
  // Cheese?" are the title "Who Moved My Cheese?", "what is dune?" is not
  // "Dune". Looked up by the title's key (one index probe), so it costs a
  // few microseconds. Never throws on user text.
  std::vector<CatalogMatch> find_exact_title(std::string_view text, int limit = 5) const;

  // The title among the best `candidates` of find_by_title(text) that best
  // aligns, word by word, with a run of the text's words (title_alignment.h:
  // small words dropped, typos, "mogs" for "Mog's"), and where that run is;
  // nullopt when no candidate shares an identifying word with the text in
  // order. "does mogs kittens have flaps" -> "Mog's Kittens", 1 word before,
  // 3 after. Never throws on user text.
  std::optional<TitleInText> find_title_in_text(std::string_view text, int candidates = 8) const;

  std::optional<StoredProduct> get(std::string_view uid) const;
  int64_t size() const;
  // The value stored with set_meta(); throws std::out_of_range when absent.
  std::string meta(std::string_view key) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vitrine::catalog
