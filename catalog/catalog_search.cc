// catalog.sqlite reader: title search for noisy wordings. See catalog.cc for
// the file layout and catalog.h for the contract.
#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

#include "catalog/catalog.h"
#include "catalog/catalog_internal.h"
#include "catalog/title_alignment.h"

namespace vitrine::catalog {

using namespace internal;  // NOLINT: this file's own internals

// ---------------------------------------------------------------- reader

// One SQLite connection to the catalogue with its statements and tokenizer:
// one call at a time. Catalog keeps a pool of them.
struct Connection {
  std::filesystem::path path;
  sql::Database db;  // declared before the statements: closes after they are finalized
  std::unique_ptr<Words> words;
  sql::Statement select_key, select_match, select_title, select_df, select_product, select_meta;
  int64_t n_products = 0;
  bool index_content = false;  // the FTS5 table also has a `content` column

  // Opens and checks the catalogue; throws std::runtime_error saying what
  // is wrong with the file.
  static std::unique_ptr<Connection> open(const std::filesystem::path& path);
  std::string meta(std::string_view key);

  struct Term {
    std::string text;
    int64_t df = 0;
    double weight = 0;  // idf; for words no title has, kUnknownWordWeight of the rarest's
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
  int collect(sql::Statement& stmt, Query& query);
  std::vector<CatalogMatch> rank(const Query& query, int limit);
};

// Reads the wording into `query`; false when no word of it is in the index.
bool Connection::read_wording(std::string_view wording, Query& query) {
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
  for (Term& term : query.terms) {
    const sql::ResetGuard guard(select_df);
    select_df.bind_text_borrowed(1, term.text);
    if (select_df.step("looking up a word")) term.df = select_df.integer(0);
    if (term.df > 0) {
      term.weight = idf(n_products, term.df);
      query.known.push_back(&term);
    } else {
      term.weight = kUnknownWordWeight * idf(n_products, 1);
    }
  }
  std::stable_sort(query.known.begin(), query.known.end(),
                   [](const Term* a, const Term* b) { return a->df < b->df; });
  if (query.known.size() > kMaxTerms) query.known.resize(kMaxTerms);
  return !query.known.empty();
}

// Steps a bound statement whose first column is a product id, adding new
// ids to the candidates; returns the number of rows.
int Connection::collect(sql::Statement& stmt, Query& query) {
  const sql::ResetGuard guard(stmt);
  int n = 0;
  while (stmt.step("searching")) {
    ++n;
    const int64_t id = stmt.integer(0);
    if (std::find(query.ids.begin(), query.ids.end(), id) == query.ids.end())
      query.ids.push_back(id);
  }
  return n;
}

// Scores every candidate on its title (see CatalogMatch) and returns the best.
std::vector<CatalogMatch> Connection::rank(const Query& query, int limit) {
  double total_weight = 0;
  for (const Term& term : query.terms) total_weight += term.weight;
  struct Scored {
    double score;
    double tie_break;  // share of the title's words (stop words too) that the wording has
    int64_t id;
  };
  std::vector<Scored> scored;
  std::vector<uint64_t> title_words;  // TitleKey::hash << 1 | is_stop, per word of a title
  sql::Statement& stmt = select_title;
  for (int64_t id : query.ids) {
    const sql::ResetGuard guard(stmt);
    stmt.bind_int64(1, id);
    const auto reading = [id] { return fmt::format("reading product {}", id); };
    if (!stmt.step(reading)) db.fail(reading());
    uint32_t found = 0;  // bit i: query.terms[i] is in the title
    title_words.clear();
    words->for_each(stmt.text(1), [&](std::string_view word) {
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
    const sql::ResetGuard guard(stmt);
    stmt.bind_int64(1, scored[i].id);
    if (!stmt.step("reading a product")) db.fail("reading a product");
    out.push_back(
        CatalogMatch{std::string(stmt.text(0)), std::string(stmt.text(1)), scored[i].score});
  }
  return out;
}

std::unique_ptr<Connection> Connection::open(const std::filesystem::path& path) {
  auto connection = std::make_unique<Connection>();
  Connection& c = *connection;
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
  c.db.open(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "catalogue " + path.string());
  // Errors ignored: the check below names whatever is wrong with the file.
  sqlite3_exec(c.db.handle(), "PRAGMA mmap_size=2147418112", nullptr, nullptr, nullptr);
  // Anything else, even an SQLite file, fails here with a message that says so.
  std::string problem;
  try {
    sql::Statement check(c.db, "SELECT * FROM pragma_application_id, pragma_user_version");
    if (!check.step()) {
      problem = fmt::format("not a vitrine catalogue ({})", c.db.errmsg());
    } else if (static_cast<int>(check.integer(0)) != kApplicationId) {
      problem = fmt::format("not a vitrine catalogue (SQLite application_id {:#x}, not {:#x})",
                            static_cast<int>(check.integer(0)), kApplicationId);
    } else if (static_cast<int>(check.integer(1)) != kFormatVersion) {
      problem = fmt::format("format version {}, this build reads {}; run `vitrine prepare` again",
                            static_cast<int>(check.integer(1)), kFormatVersion);
    }
  } catch (const sql::Error& error) {
    problem = fmt::format("not a vitrine catalogue ({})", error.detail());
  }
  if (!problem.empty()) throw std::runtime_error("catalogue " + path.string() + ": " + problem);
  // finish() writes catalog.products last; without it the file may even
  // lack its tables (they were never committed).
  try {
    c.select_meta =
        sql::Statement(c.db, "SELECT value FROM meta WHERE key = ?1", sql::Prepare::kPersistent);
    c.n_products = std::stoll(c.meta("catalog.products"));
    c.index_content = c.meta("catalog.index_content") == "1";
  } catch (const std::exception& error) {
    throw std::runtime_error(fmt::format(
        "catalogue {}: incomplete, its writer never finished ({}); delete it and run `vitrine "
        "prepare` again",
        path.string(), error.what()));
  }
  c.words = std::make_unique<Words>(c.db);
  const auto prepare = [&](const char* text) {
    return sql::Statement(c.db, text, sql::Prepare::kPersistent);
  };
  c.select_product =
      prepare("SELECT uid, title, content, split, lang, line FROM products WHERE uid = ?1");
  c.select_title = prepare("SELECT uid, title FROM products WHERE id = ?1");
  c.select_df = prepare("SELECT df FROM terms WHERE term = ?1");
  c.select_key = prepare("SELECT id FROM title_keys WHERE key = ?1 ORDER BY id LIMIT ?2");
  c.select_match =
      prepare("SELECT rowid FROM products_fts WHERE products_fts MATCH ?1 ORDER BY rowid LIMIT ?2");
  return connection;
}

std::string Connection::meta(std::string_view key) {
  const sql::ResetGuard guard(select_meta);
  select_meta.bind_text_borrowed(1, key);
  if (!select_meta.step([&] { return fmt::format("reading meta key '{}'", key); })) {
    throw std::out_of_range(fmt::format("catalogue {}: no meta key '{}'", path.string(), key));
  }
  return std::string(select_meta.text(0));
}

// The pool: connections are opened when every open one is busy, up to
// max_connections; a call then waits for one to be returned.
struct Catalog::Impl {
  std::filesystem::path path;
  int max_connections = 1;
  int64_t n_products = 0;
  std::mutex mutex;  // guards idle and opened
  std::condition_variable returned;
  std::vector<std::unique_ptr<Connection>> idle;
  int opened = 0;

  // A connection for one call, returned to the pool when the lease ends.
  class Lease {
   public:
    Lease(Impl& pool, std::unique_ptr<Connection> connection)
        : pool_(pool), connection_(std::move(connection)) {}
    ~Lease() {
      {
        std::lock_guard lock(pool_.mutex);
        pool_.idle.push_back(std::move(connection_));
      }
      pool_.returned.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Connection& operator*() const { return *connection_; }

   private:
    Impl& pool_;
    std::unique_ptr<Connection> connection_;
  };

  Lease lease() {
    std::unique_lock lock(mutex);
    returned.wait(lock, [&] { return !idle.empty() || opened < max_connections; });
    if (!idle.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle.back());
      idle.pop_back();
      return Lease(*this, std::move(connection));
    }
    ++opened;  // opened outside the lock: other calls go on meanwhile
    lock.unlock();
    try {
      return Lease(*this, Connection::open(path));
    } catch (...) {
      {
        std::lock_guard relock(mutex);
        --opened;
      }
      returned.notify_one();
      throw;
    }
  }
};

Catalog::Catalog(const std::filesystem::path& path, int max_connections)
    : impl_(std::make_unique<Impl>()) {
  if (max_connections < 1) {
    throw std::invalid_argument(
        fmt::format("catalogue {}: max_connections must be at least 1, got {}", path.string(),
                    max_connections));
  }
  Impl& pool = *impl_;
  pool.path = path;
  pool.max_connections = max_connections;
  // The first connection now, so that a file that is no catalogue fails here.
  std::unique_ptr<Connection> first = Connection::open(path);
  pool.n_products = first->n_products;
  pool.idle.push_back(std::move(first));
  pool.opened = 1;
}

Catalog::~Catalog() = default;

std::vector<CatalogMatch> Catalog::find_by_title(std::string_view wording, int limit) const {
  if (limit <= 0 || wording.empty()) return {};
  const Impl::Lease lease = impl_->lease();
  Connection& c = *lease;
  Connection::Query query;
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
      c.select_key.bind_int64(1, key.value());
      c.select_key.bind_int64(2, whole ? kCandidates : kRunMatches);
      if (c.collect(c.select_key, query) == 0) continue;
      if (whole) return c.rank(query, limit);
      longest_run = std::max(longest_run, end - begin + 1);
    }
  }
  const auto search = [&](const std::string& expression) {
    const std::string match = (c.index_content ? "{title} : (" : "(") + expression + ")";
    c.select_match.bind_text_borrowed(1, match);
    c.select_match.bind_int64(2, kCandidates);
    return c.collect(c.select_match, query);
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
  for (const Connection::Term* term : known) {
    if ((rows += term->df) > kCandidates) break;
    any += (any.empty() ? "" : " OR ") + fts5_string(term->text);
  }
  if (!any.empty()) search(any);
  return c.rank(query, limit);
}

namespace {

// `text` as find_exact_title compares it: ASCII lowercase, white space runs
// made one space, no white space at either end, no trailing question marks.
std::string exact_title_form(std::string_view text) {
  std::string out;
  bool space = false;
  for (const char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  while (!out.empty() && (out.back() == '?' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

std::vector<CatalogMatch> Catalog::find_exact_title(std::string_view text, int limit) const {
  const std::string wanted = exact_title_form(text);
  if (limit <= 0 || wanted.empty()) return {};
  const Impl::Lease lease = impl_->lease();
  Connection& c = *lease;
  // The writer keyed every title by all its words; equal forms have equal
  // words, so the title, if any, is among the products with this key.
  TitleKey key;
  bool any_word = false;
  c.words->for_each(wanted, [&](std::string_view word) {
    key.add(word);
    any_word = true;
    return true;
  });
  if (!any_word) return {};
  Connection::Query query;
  c.select_key.bind_int64(1, key.value());
  c.select_key.bind_int64(2, kCandidates);
  c.collect(c.select_key, query);
  std::vector<CatalogMatch> out;
  sql::Statement& stmt = c.select_title;
  for (const int64_t id : query.ids) {
    const sql::ResetGuard guard(stmt);
    stmt.bind_int64(1, id);
    const auto reading = [id] { return fmt::format("reading product {}", id); };
    if (!stmt.step(reading)) c.db.fail(reading());
    if (exact_title_form(stmt.text(1)) != wanted) continue;
    out.push_back(CatalogMatch{std::string(stmt.text(0)), std::string(stmt.text(1)), 1.0});
    if (out.size() == static_cast<size_t>(limit)) break;
  }
  return out;
}

namespace {

// Where a title's main title ends: its first ':', " (", " - ", " [" or
// " -- "; the whole title when it has none.
size_t main_title_end(std::string_view title) {
  size_t end = title.size();
  for (const std::string_view cut : {":", " (", " - ", " [", " -- "}) {
    const size_t at = title.find(cut);
    if (at != std::string_view::npos && at > 0) end = std::min(end, at);
  }
  return end;
}

// The position of the '?' or '!' that follows `from` in `s` after spaces
// only; s.size() when the next character is anything else.
size_t next_mark(std::string_view s, size_t from) {
  while (from < s.size() && s[from] == ' ') ++from;
  return from < s.size() && (s[from] == '?' || s[from] == '!') ? from : s.size();
}

}  // namespace

std::optional<TitleInText> Catalog::find_title_in_text(std::string_view text,
                                                       int candidates) const {
  const std::vector<CatalogMatch> matches = find_by_title(text, candidates);
  if (matches.empty()) return std::nullopt;
  const Impl::Lease lease = impl_->lease();
  Connection& c = *lease;
  struct Spanned {
    AlignWord word;
    size_t begin, end;  // bytes of the text or title
  };
  const auto words_of = [&](std::string_view s, size_t max_words) {
    std::vector<Spanned> out;
    c.words->for_each_span(s, [&](std::string_view word, size_t begin, size_t end) {
      out.push_back({AlignWord{std::string(word), is_stop_word(word)}, begin, end});
      return out.size() < max_words;
    });
    return out;
  };
  const std::vector<Spanned> typed = words_of(text, kMaxWordingWords);
  std::vector<AlignWord> text_words;
  for (const Spanned& w : typed) text_words.push_back(w.word);
  std::optional<TitleInText> best;
  double best_score = 0;
  for (const CatalogMatch& match : matches) {
    const std::vector<Spanned> spanned = words_of(match.title, 4 * kMaxWordingWords);
    std::vector<AlignWord> title_words;
    for (const Spanned& w : spanned) title_words.push_back(w.word);
    const TitleAlignment a = align_title(text_words, title_words);
    const bool all_stop = std::all_of(title_words.begin(), title_words.end(),
                                      [](const AlignWord& w) { return w.stop; });
    const int matched = all_stop ? a.matched : a.matched_content;
    if (matched == 0 || a.score <= best_score) continue;
    best_score = a.score;
    // Identifying words of the whole title, of its main title, and before the run.
    const size_t main_end = main_title_end(match.title);
    int whole = 0, main = 0, before = 0;
    for (size_t k = 0; k < spanned.size(); ++k) {
      const bool counts = all_stop || !spanned[k].word.stop;
      whole += counts;
      main += counts && spanned[k].begin < main_end;
      before += counts && static_cast<int>(k) < a.title_begin;
    }
    const bool within_main =
        a.title_end <= static_cast<int>(spanned.size()) &&
        (a.title_end == 0 || spanned[static_cast<size_t>(a.title_end - 1)].begin < main_end);
    TitleInText t;
    t.uid = match.uid;
    t.title = match.title;
    t.search_score = match.score;
    t.text_words = static_cast<int>(typed.size());
    t.words_before = a.text_begin;
    t.words_after = static_cast<int>(typed.size()) - a.text_end;
    t.byte_begin = typed[static_cast<size_t>(a.text_begin)].begin;
    t.byte_end = typed[static_cast<size_t>(a.text_end - 1)].end;
    // The title's own '?' or '!' after its last matched word ("Where Have
    // All the Boys Gone?") is the title's, when the text has it there too.
    if (a.title_end > 0) {
      const size_t after_title =
          next_mark(match.title, spanned[static_cast<size_t>(a.title_end - 1)].end);
      const size_t after_text = next_mark(text, t.byte_end);
      if (after_title < match.title.size() && after_text < text.size() &&
          match.title[after_title] == text[after_text]) {
        t.byte_end = after_text + 1;
      }
    }
    t.title_words = within_main && main > 0 ? main : whole;
    t.matched_words = matched;
    t.coverage =
        t.title_words > 0 ? std::min(1.0, static_cast<double>(matched) / t.title_words) : 0;
    t.from_start = before == 0;
    t.typos = a.typos;
    best = std::move(t);
  }
  return best;
}

std::optional<StoredProduct> Catalog::get(std::string_view uid) const {
  const Impl::Lease lease = impl_->lease();
  Connection& c = *lease;
  sql::Statement& stmt = c.select_product;
  const sql::ResetGuard guard(stmt);
  stmt.bind_text_borrowed(1, uid);
  if (!stmt.step([&] { return fmt::format("reading uid '{}'", uid); })) return std::nullopt;
  return StoredProduct{std::string(stmt.text(0)), std::string(stmt.text(1)),
                       std::string(stmt.text(2)), std::string(stmt.text(3)),
                       std::string(stmt.text(4)), static_cast<uint64_t>(stmt.integer(5))};
}

int64_t Catalog::size() const {
  return impl_->n_products;
}

std::string Catalog::meta(std::string_view key) const {
  const Impl::Lease lease = impl_->lease();
  return (*lease).meta(key);
}

}  // namespace vitrine::catalog
