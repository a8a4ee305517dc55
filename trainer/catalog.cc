// catalog.sqlite: writer (bulk load, FTS5 build) and reader (title search).
// See catalog.h for the contract. The file holds:
//
//   products(id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, title, content, split, lang, line)
//   meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID
//   products_fts   FTS5, external content = products, columns title [, content], detail=column
//   terms(term TEXT PRIMARY KEY, df) WITHOUT ROWID   title word -> number of titles with it
//   title_keys(key, id, PRIMARY KEY(key, id)) WITHOUT ROWID   hash of a title's identifying words
//
// PRAGMA application_id marks the file as a vitrine catalogue; user_version
// is the format version.
//
// Why a query runs as it does (measured on 1.35M synthetic titles): FTS5
// walks the rows of a boolean expression at ~0.03 us a doclist entry, but
// bm25() costs ~8 us a row (it reads each row's size, and with detail=column
// re-tokenizes the row to count instances): ranking the 30,000 rows of a
// common word takes 200 ms. So no query here ranks in FTS5. Candidates come
// from, in order, stopping at the first that suffices: exact lookups of
// every run of the wording's identifying words in title_keys (~1 us each);
// an AND of the rarest words, in rowid order; any two of the three rarest;
// the rarest words while they match few rows. Candidates are then re-ranked
// on their titles.
#include "trainer/catalog.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

namespace vitrine::trainer {
namespace {

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
static_assert(kMaxLookups <= 32, "rank() keeps found words in a 32-bit mask");

// Words that say nothing about which product is meant, folded as unicode61
// folds them ("é" -> "e", "você" -> "voce").
bool is_stop_word(std::string_view word) {
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

struct StmtDeleter {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

// Resets a statement on scope exit, so that no read stays open.
struct ResetGuard {
  sqlite3_stmt* stmt;
  ~ResetGuard() {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
};

std::string_view column_text(sqlite3_stmt* stmt, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  return text ? std::string_view(text, sqlite3_column_bytes(stmt, column)) : std::string_view();
}

// Binds without copying: `text` must outlive the statement's next step.
void bind_text(sqlite3_stmt* stmt, int index, std::string_view text) {
  sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

[[noreturn]] void fail(sqlite3* db, const std::filesystem::path& path, std::string_view what) {
  throw std::runtime_error(fmt::format("catalogue {}: {}: {}", path.string(), what,
                                       db ? sqlite3_errmsg(db) : "out of memory"));
}

Stmt prepare(sqlite3* db, const std::filesystem::path& path, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
      SQLITE_OK) {
    fail(db, path, fmt::format("preparing '{}'", sql));
  }
  return Stmt(stmt);
}

// The FTS5 unicode61 tokenizer with the index's arguments, so that titles
// and wordings are cut and folded exactly as the index cuts them.
class Words {
 public:
  Words(sqlite3* db, const std::filesystem::path& path) {
    fts5_api* api = nullptr;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &stmt, nullptr) == SQLITE_OK) {
      sqlite3_bind_pointer(stmt, 1, &api, "fts5_api_ptr", nullptr);
      sqlite3_step(stmt);
    }
    sqlite3_finalize(stmt);
    void* context = nullptr;
    const char* args[] = {"remove_diacritics", "2"};
    if (!api || api->xFindTokenizer(api, "unicode61", &context, &api_) != SQLITE_OK ||
        api_.xCreate(context, args, 2, &instance_) != SQLITE_OK) {
      throw std::runtime_error(
          fmt::format("catalogue {}: this SQLite has no FTS5 unicode61 tokenizer", path.string()));
    }
  }
  ~Words() { api_.xDelete(instance_); }
  Words(const Words&) = delete;
  Words& operator=(const Words&) = delete;

  // Calls f(word) for each folded word of `text` while f returns true; the
  // view is valid only during the call.
  template <class F>
  void for_each(std::string_view text, F&& f) {
    using Fn = std::remove_reference_t<F>;
    auto trampoline = [](void* raw, int, const char* token, int n, int, int) -> int {
      return (*static_cast<Fn*>(raw))(std::string_view(token, static_cast<size_t>(n)))
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
std::string fts5_string(std::string_view term) {
  std::string out = "\"";
  for (char c : term) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// BM25's inverse document frequency; always > 0.
double idf(int64_t n_docs, int64_t df) {
  return std::log(1.0 + (static_cast<double>(n_docs - df) + 0.5) / (static_cast<double>(df) + 0.5));
}

// Percent-encodes a path for an SQLite URI filename.
std::string uri_path(const std::filesystem::path& path) {
  std::string out;
  for (unsigned char c : std::filesystem::absolute(path).string()) {
    const bool plain = c >= 0x20 && c < 0x7f && c != '%' && c != '?' && c != '#';
    out += plain ? std::string(1, static_cast<char>(c)) : fmt::format("%{:02X}", c);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- writer

struct CatalogWriter::Impl {
  std::filesystem::path path;
  CatalogOptions options;
  sqlite3* db = nullptr;
  std::unique_ptr<Words> words;
  Stmt insert_product, insert_meta;
  std::vector<std::pair<int64_t, int64_t>> title_keys;  // (key, id); finish() inserts them sorted
  int64_t n_products = 0;
  bool finished = false;

  // close_v2 lets the statements be finalized after it, as members die.
  ~Impl() { sqlite3_close_v2(db); }
  void exec(const std::string& sql, std::string_view what) {
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, path, what);
  }
  void check_open(const char* call) const {
    if (finished)
      throw std::logic_error(fmt::format("catalogue {}: {} after finish()", path.string(), call));
  }
};

CatalogWriter::CatalogWriter(const std::filesystem::path& path, CatalogOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = path;
  w.options = options;
  if (std::filesystem::exists(path)) {
    throw std::runtime_error(fmt::format(
        "catalogue {}: already exists; CatalogWriter only writes new files", path.string()));
  }
  const int ps = options.page_size;  // SQLite would silently ignore a wrong one
  if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0) {
    throw std::invalid_argument(fmt::format("catalogue {}: bad page_size {}", path.string(), ps));
  }
  if (sqlite3_open_v2(path.c_str(), &w.db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE,
                      nullptr) != SQLITE_OK) {
    fail(w.db, path, "cannot create");  // ~Impl closes w.db
  }
  // No journal and no syncs: a failed build leaves a file to delete, never
  // one to recover. secure_delete (on in Debian's build) would zero every
  // page that the FTS5 merge frees.
  w.exec(fmt::format(
             "PRAGMA page_size={}; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
             "PRAGMA locking_mode=EXCLUSIVE; PRAGMA secure_delete=OFF; PRAGMA temp_store=MEMORY;"
             "PRAGMA cache_size={}; PRAGMA application_id={}; PRAGMA user_version={};",
             ps, -1024 * std::max(options.cache_mib, 2), kApplicationId, kFormatVersion),
         "setting pragmas");
  w.exec("BEGIN", "starting the transaction");
  w.exec(
      fmt::format(
          "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
          "CREATE TABLE products(id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, title TEXT NOT "
          "NULL,"
          " content TEXT NOT NULL, split TEXT NOT NULL, lang TEXT NOT NULL, line INTEGER NOT NULL);"
          "CREATE VIRTUAL TABLE products_fts USING fts5({}, content='products', content_rowid='id',"
          " tokenize='unicode61 remove_diacritics 2', detail=column);",
          options.index_content ? "title, content" : "title"),
      "creating tables");
  w.insert_product = prepare(w.db, path,
                             "INSERT INTO products(uid, title, content, split, lang, line) "
                             "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  w.insert_meta = prepare(w.db, path, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
  w.words = std::make_unique<Words>(w.db, path);
}

CatalogWriter::~CatalogWriter() = default;

int64_t CatalogWriter::size() const {
  return impl_->n_products;
}

void CatalogWriter::add(const Product& product) {
  Impl& w = *impl_;
  w.check_open("add()");
  sqlite3_stmt* stmt = w.insert_product.get();
  bind_text(stmt, 1, product.uid);
  bind_text(stmt, 2, product.title);
  bind_text(stmt, 3, product.content);
  bind_text(stmt, 4, split_name(product.split));
  bind_text(stmt, 5, product.lang);
  sqlite3_bind_int64(stmt, 6, static_cast<sqlite3_int64>(product.line));
  const int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    throw std::runtime_error(
        fmt::format("catalogue {}: uid '{}' (input line {}) was already added; uids must be unique",
                    w.path.string(), product.uid, product.line));
  }
  if (rc != SQLITE_DONE) {
    fail(w.db, w.path,
         fmt::format("inserting uid '{}' (input line {})", product.uid, product.line));
  }
  ++w.n_products;
  TitleKey key;
  w.words->for_each(product.title, [&](std::string_view word) {
    key.add(word);
    return true;
  });
  w.title_keys.emplace_back(key.value(), w.n_products);
}

void CatalogWriter::set_meta(std::string_view key, std::string_view value) {
  Impl& w = *impl_;
  w.check_open("set_meta()");
  if (key.starts_with(kReservedPrefix)) {
    throw std::invalid_argument(fmt::format("catalogue {}: meta key '{}' is reserved (prefix '{}')",
                                            w.path.string(), key, kReservedPrefix));
  }
  sqlite3_stmt* stmt = w.insert_meta.get();
  bind_text(stmt, 1, key);
  bind_text(stmt, 2, value);
  const int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  if (rc != SQLITE_DONE) fail(w.db, w.path, fmt::format("writing meta key '{}'", key));
}

void CatalogWriter::finish() {
  Impl& w = *impl_;
  w.check_open("finish()");
  w.finished = true;
  // One pass over the products builds the index in few large segments, with
  // no merging on the way; 'optimize' then merges them into one. Measured on
  // 1.35M titles: 3.2 s, against 4.5 s with FTS5's default settings.
  w.exec(fmt::format("INSERT INTO products_fts(products_fts, rank) VALUES('hashsize', {});"
                     "INSERT INTO products_fts(products_fts, rank) VALUES('automerge', 0);"
                     "INSERT INTO products_fts(products_fts) VALUES('rebuild');"
                     "INSERT INTO products_fts(products_fts) VALUES('optimize');",
                     int64_t{std::clamp(w.options.index_memory_mib, 1, 1024)} << 20),
         "building the FTS5 index");
  w.exec(
      "CREATE VIRTUAL TABLE temp.fts_vocab USING fts5vocab(main, products_fts, col);"
      "CREATE TABLE terms(term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;"
      "INSERT INTO terms SELECT term, doc FROM temp.fts_vocab WHERE col = 'title' ORDER BY term;"
      "DROP TABLE temp.fts_vocab;"
      "CREATE TABLE title_keys(key INTEGER NOT NULL, id INTEGER NOT NULL,"
      " PRIMARY KEY(key, id)) WITHOUT ROWID;",
      "building the term table");
  std::sort(w.title_keys.begin(), w.title_keys.end());
  Stmt insert_key = prepare(w.db, w.path, "INSERT INTO title_keys(key, id) VALUES(?1, ?2)");
  for (const auto& [key, id] : w.title_keys) {
    sqlite3_bind_int64(insert_key.get(), 1, key);
    sqlite3_bind_int64(insert_key.get(), 2, id);
    const int rc = sqlite3_step(insert_key.get());
    sqlite3_reset(insert_key.get());
    if (rc != SQLITE_DONE) fail(w.db, w.path, "building the title keys");
  }
  insert_key.reset();
  std::vector<std::pair<int64_t, int64_t>>().swap(w.title_keys);
  w.exec(fmt::format("INSERT OR REPLACE INTO meta(key, value) VALUES"
                     "('catalog.products', '{}'), ('catalog.index_content', '{}');",
                     w.n_products, w.options.index_content ? 1 : 0),
         "writing the catalogue meta");
  w.insert_product.reset();
  w.insert_meta.reset();
  w.words.reset();
  w.exec("COMMIT", "committing");
  if (sqlite3_close(w.db) != SQLITE_OK) fail(w.db, w.path, "closing");
  w.db = nullptr;
}

// ---------------------------------------------------------------- reader

struct Catalog::Impl {
  std::filesystem::path path;
  sqlite3* db = nullptr;
  std::unique_ptr<Words> words;
  Stmt select_key, select_match, select_title, select_df, select_product, select_meta;
  int64_t n_products = 0;
  bool index_content = false;  // the FTS5 table also has a `content` column
  std::mutex mutex;            // guards the statements and the tokenizer

  ~Impl() { sqlite3_close_v2(db); }  // finalizes with the last statement

  struct Term {
    std::string text;
    int64_t df = 0;
    double weight = 0;  // idf; 0 for words the catalogue does not know
  };
  struct Query {
    std::vector<std::string> run;    // identifying words in wording order, repeats kept
    bool run_complete = true;        // `run` holds all of them
    std::vector<uint64_t> hashes;    // TitleKey::hash of every word of the wording, sorted
    std::vector<Term> terms;         // identifying words, distinct, in wording order
    std::vector<const Term*> known;  // the rarest known ones, rarest first
    std::vector<int64_t> ids;        // candidate product ids, in order of discovery
  };

  bool read_wording(std::string_view wording, Query& query);
  int collect(sqlite3_stmt* stmt, Query& query);
  std::vector<CatalogMatch> rank(const Query& query, int limit);
};

// Reads the wording into `query`; false when no word of it is in the index.
bool Catalog::Impl::read_wording(std::string_view wording, Query& query) {
  std::vector<std::string> all;
  words->for_each(wording, [&](std::string_view word) {
    all.emplace_back(word);
    return all.size() < kMaxWordingWords;
  });
  for (const std::string& word : all) query.hashes.push_back(TitleKey::hash(word));
  std::sort(query.hashes.begin(), query.hashes.end());
  // Stop words count only when nothing else is left ("What Is the What").
  const bool all_stop = std::all_of(all.begin(), all.end(), is_stop_word);
  for (std::string& word : all) {
    if (!all_stop && is_stop_word(word)) continue;
    if (query.run.size() < kMaxRunWords)
      query.run.push_back(word);
    else
      query.run_complete = false;
    const bool seen = std::any_of(query.terms.begin(), query.terms.end(),
                                  [&](const Term& term) { return term.text == word; });
    if (!seen && query.terms.size() < kMaxLookups) query.terms.push_back(Term{std::move(word)});
  }
  sqlite3_stmt* stmt = select_df.get();
  for (Term& term : query.terms) {
    ResetGuard guard{stmt};
    bind_text(stmt, 1, term.text);
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
      term.df = sqlite3_column_int64(stmt, 0);
    else if (rc != SQLITE_DONE)
      fail(db, path, "looking up a word");
    if (term.df > 0) {
      term.weight = idf(n_products, term.df);
      query.known.push_back(&term);
    }
  }
  std::stable_sort(query.known.begin(), query.known.end(),
                   [](const Term* a, const Term* b) { return a->df < b->df; });
  if (query.known.size() > kMaxTerms) query.known.resize(kMaxTerms);
  return !query.known.empty();
}

// Steps a bound statement whose first column is a product id, adding new
// ids to the candidates; returns the number of rows.
int Catalog::Impl::collect(sqlite3_stmt* stmt, Query& query) {
  ResetGuard guard{stmt};
  int rc, n = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    ++n;
    const int64_t id = sqlite3_column_int64(stmt, 0);
    if (std::find(query.ids.begin(), query.ids.end(), id) == query.ids.end())
      query.ids.push_back(id);
  }
  if (rc != SQLITE_DONE) fail(db, path, "searching");
  return n;
}

// Scores every candidate on its title (see CatalogMatch) and returns the best.
std::vector<CatalogMatch> Catalog::Impl::rank(const Query& query, int limit) {
  double total_weight = 0;
  for (const Term& term : query.terms) total_weight += term.weight;
  struct Scored {
    double score;
    double tie_break;  // share of the title's words (stop words too) that the wording has
    int64_t id;
  };
  std::vector<Scored> scored;
  std::vector<uint64_t> title_words;  // TitleKey::hash << 1 | is_stop, per word of a title
  sqlite3_stmt* stmt = select_title.get();
  for (int64_t id : query.ids) {
    ResetGuard guard{stmt};
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) != SQLITE_ROW) fail(db, path, fmt::format("reading product {}", id));
    uint32_t found = 0;  // bit i: query.terms[i] is in the title
    title_words.clear();
    words->for_each(column_text(stmt, 1), [&](std::string_view word) {
      for (size_t i = 0; i < query.terms.size(); ++i) {
        if (query.terms[i].text == word) found |= 1u << i;
      }
      title_words.push_back(TitleKey::hash(word) << 1 | is_stop_word(word));
      return true;
    });
    double found_weight = 0;
    size_t found_identity = 0, found_all = 0;
    for (size_t i = 0; i < query.terms.size(); ++i) {
      if (!(found >> i & 1)) continue;
      found_weight += query.terms[i].weight;
      ++found_all;
      found_identity += !is_stop_word(query.terms[i].text);
    }
    double tie_break = 0;
    for (uint64_t word : title_words) {
      tie_break += std::binary_search(query.hashes.begin(), query.hashes.end(), word >> 1);
    }
    tie_break /= static_cast<double>(std::max<size_t>(title_words.size(), 1));
    // Share of the title's distinct identifying words that the wording has.
    std::sort(title_words.begin(), title_words.end());
    const auto distinct_end = std::unique(title_words.begin(), title_words.end());
    const auto n_all = static_cast<size_t>(distinct_end - title_words.begin());
    const auto n_identity = static_cast<size_t>(std::count_if(
        title_words.begin(), distinct_end, [](uint64_t word) { return !(word & 1); }));
    const double title_share = n_identity ? static_cast<double>(found_identity) / n_identity
                               : n_all    ? static_cast<double>(found_all) / n_all
                                          : 0;
    const double wording_share = total_weight > 0 ? found_weight / total_weight : 0;
    const double score =
        kQueryCoverageWeight * wording_share + (1 - kQueryCoverageWeight) * title_share;
    scored.push_back(Scored{score, tie_break, id});
  }
  const size_t n = std::min(scored.size(), static_cast<size_t>(limit));
  std::partial_sort(scored.begin(), scored.begin() + n, scored.end(),
                    [](const Scored& a, const Scored& b) {
                      if (a.score != b.score) return a.score > b.score;
                      if (a.tie_break != b.tie_break) return a.tie_break > b.tie_break;
                      return a.id < b.id;
                    });
  std::vector<CatalogMatch> out;
  for (size_t i = 0; i < n; ++i) {
    ResetGuard guard{stmt};
    sqlite3_bind_int64(stmt, 1, scored[i].id);
    if (sqlite3_step(stmt) != SQLITE_ROW) fail(db, path, "reading a product");
    out.push_back(CatalogMatch{std::string(column_text(stmt, 0)), std::string(column_text(stmt, 1)),
                               scored[i].score});
  }
  return out;
}

Catalog::Catalog(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
  Impl& c = *impl_;
  c.path = path;
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw std::runtime_error(
        fmt::format("catalogue {}: no such file (run `vitrine prepare` first?)", path.string()));
  }
  // immutable: the file is a finished artefact, so no file locks and no
  // change checks per statement (7x faster title searches, measured); mmap:
  // pages are read in place (2 GiB is the maximum of Debian's SQLite).
  const std::string uri = "file:" + uri_path(path) + "?immutable=1";
  if (sqlite3_open_v2(uri.c_str(), &c.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr) !=
      SQLITE_OK) {
    fail(c.db, path, "cannot open");
  }
  sqlite3_exec(c.db, "PRAGMA mmap_size=2147418112", nullptr, nullptr, nullptr);
  // Anything else, even an SQLite file, fails here with a message that says so.
  sqlite3_stmt* check = nullptr;
  std::string problem;
  if (sqlite3_prepare_v2(c.db, "SELECT * FROM pragma_application_id, pragma_user_version", -1,
                         &check, nullptr) != SQLITE_OK ||
      sqlite3_step(check) != SQLITE_ROW) {
    problem = fmt::format("not a vitrine catalogue ({})", sqlite3_errmsg(c.db));
  } else if (sqlite3_column_int(check, 0) != kApplicationId) {
    problem = fmt::format("not a vitrine catalogue (SQLite application_id {:#x}, not {:#x})",
                          sqlite3_column_int(check, 0), kApplicationId);
  } else if (sqlite3_column_int(check, 1) != kFormatVersion) {
    problem = fmt::format("format version {}, this build reads {}; run `vitrine prepare` again",
                          sqlite3_column_int(check, 1), kFormatVersion);
  }
  sqlite3_finalize(check);
  if (!problem.empty()) throw std::runtime_error("catalogue " + path.string() + ": " + problem);
  // finish() writes catalog.products last; without it the file may even
  // lack its tables (they were never committed).
  try {
    c.select_meta = prepare(c.db, path, "SELECT value FROM meta WHERE key = ?1");
    c.n_products = std::stoll(meta("catalog.products"));
    c.index_content = meta("catalog.index_content") == "1";
  } catch (const std::exception& error) {
    throw std::runtime_error(fmt::format(
        "catalogue {}: incomplete, its writer never finished ({}); delete it and run `vitrine "
        "prepare` again",
        path.string(), error.what()));
  }
  c.words = std::make_unique<Words>(c.db, path);
  c.select_product = prepare(
      c.db, path, "SELECT uid, title, content, split, lang, line FROM products WHERE uid = ?1");
  c.select_title = prepare(c.db, path, "SELECT uid, title FROM products WHERE id = ?1");
  c.select_df = prepare(c.db, path, "SELECT df FROM terms WHERE term = ?1");
  c.select_key =
      prepare(c.db, path, "SELECT id FROM title_keys WHERE key = ?1 ORDER BY id LIMIT ?2");
  c.select_match =
      prepare(c.db, path,
              "SELECT rowid FROM products_fts WHERE products_fts MATCH ?1 ORDER BY rowid LIMIT ?2");
}

Catalog::~Catalog() = default;

std::vector<CatalogMatch> Catalog::find_by_title(std::string_view wording, int limit) const {
  if (limit <= 0 || wording.empty()) return {};
  Impl& c = *impl_;
  std::lock_guard lock(c.mutex);
  Impl::Query query;
  if (!c.read_wording(wording, query)) return {};
  const auto& known = query.known;
  // 1. Titles made of exactly a run of the wording's identifying words
  // ("the book dune by frank herbert" names "Dune"). When the whole wording
  // is a title, no other title can score higher: done.
  size_t longest_run = 0;  // words of the longest run that is a title
  for (size_t begin = 0; begin < query.run.size(); ++begin) {
    TitleKey key;
    for (size_t end = begin; end < query.run.size(); ++end) {
      key.add(query.run[end]);
      const bool whole = begin == 0 && end + 1 == query.run.size() && query.run_complete;
      sqlite3_bind_int64(c.select_key.get(), 1, key.value());
      sqlite3_bind_int(c.select_key.get(), 2, whole ? kCandidates : kRunMatches);
      if (c.collect(c.select_key.get(), query) == 0) continue;
      if (whole) return c.rank(query, limit);
      longest_run = std::max(longest_run, end - begin + 1);
    }
  }
  const auto search = [&](const std::string& expression) {
    const std::string match = (c.index_content ? "{title} : (" : "(") + expression + ")";
    bind_text(c.select_match.get(), 1, match);
    sqlite3_bind_int(c.select_match.get(), 2, kCandidates);
    return c.collect(c.select_match.get(), query);
  };
  // 2. Titles with all of the rarest words (words dropped or reordered);
  // when those often go together ("3,500 Color Illustrations, 25,000
  // Terms") and fill the limit, with more words.
  const size_t n_before = query.ids.size();
  std::string all;
  for (size_t n_terms = 0; n_terms < known.size();) {
    query.ids.resize(n_before);
    for (const size_t end = std::min(known.size(), n_terms + kAndTerms); n_terms < end; ++n_terms) {
      all += (n_terms ? " AND " : "") + fts5_string(known[n_terms]->text);
    }
    const int rows = search(all);
    if (rows == 0) break;
    if (rows < kCandidates || n_terms == known.size()) return c.rank(query, limit);
  }
  // 3. Titles with any two of the rarest words (words added), unless a run
  // that leaves out at most two words already names a title.
  const bool run_found =
      query.run_complete && longest_run >= 2 && longest_run + 2 >= query.run.size();
  if (known.size() >= kPairTerms && !run_found) {
    std::string pairs;
    for (size_t i = 0; i < kPairTerms; ++i) {
      for (size_t j = i + 1; j < kPairTerms; ++j) {
        pairs += (pairs.empty() ? "(" : " OR (") + fts5_string(known[i]->text) + " AND " +
                 fts5_string(known[j]->text) + ")";
      }
    }
    if (search(pairs) > 0) return c.rank(query, limit);
  }
  // 4. Titles with any of the rarest words, while those match so few rows
  // that all of them are taken.
  std::string any;
  int64_t rows = 0;
  for (const Impl::Term* term : known) {
    if ((rows += term->df) > kCandidates) break;
    any += (any.empty() ? "" : " OR ") + fts5_string(term->text);
  }
  if (!any.empty()) search(any);
  return c.rank(query, limit);
}

std::optional<StoredProduct> Catalog::get(std::string_view uid) const {
  Impl& c = *impl_;
  std::lock_guard lock(c.mutex);
  sqlite3_stmt* stmt = c.select_product.get();
  ResetGuard guard{stmt};
  bind_text(stmt, 1, uid);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return std::nullopt;
  if (rc != SQLITE_ROW) fail(c.db, c.path, fmt::format("reading uid '{}'", uid));
  return StoredProduct{
      std::string(column_text(stmt, 0)), std::string(column_text(stmt, 1)),
      std::string(column_text(stmt, 2)), std::string(column_text(stmt, 3)),
      std::string(column_text(stmt, 4)), static_cast<uint64_t>(sqlite3_column_int64(stmt, 5))};
}

int64_t Catalog::size() const {
  return impl_->n_products;
}

std::string Catalog::meta(std::string_view key) const {
  Impl& c = *impl_;
  std::lock_guard lock(c.mutex);
  sqlite3_stmt* stmt = c.select_meta.get();
  ResetGuard guard{stmt};
  bind_text(stmt, 1, key);
  const int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) {
    throw std::out_of_range(fmt::format("catalogue {}: no meta key '{}'", c.path.string(), key));
  }
  if (rc != SQLITE_ROW) fail(c.db, c.path, fmt::format("reading meta key '{}'", key));
  return std::string(column_text(stmt, 0));
}

}  // namespace vitrine::trainer
