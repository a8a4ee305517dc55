// The one SQLite helper: a connection (sql::Database) and a prepared
// statement (sql::Statement) that close and finalize themselves, bind and
// read each column type, and throw sql::Error messages that begin with the
// caller's context ("catalogue /x/catalog.sqlite", "response log '/x/log'"),
// so each library keeps its own wording around one copy of this code.
//
// Error messages read "<context>: <what>: <SQLite's message>", where <what>
// is the failed statement's SQL unless the caller names the operation
// ("reading product 42"); an empty <what> is left out.
//
// Not goals: an ORM or query builder, connection pools, hiding SQLite (the
// flags are SQLite's own, and handle() gives the raw connection for what
// this does not wrap, such as the catalogue's FTS5 tokenizer). A Database
// and its Statements are used by one thread at a time; callers lock.
// This header does not include <sqlite3.h>; callers that pass flags or
// compare result codes include it.
#pragma once

#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

struct sqlite3;
struct sqlite3_stmt;

namespace vitrine::sql {

// An SQLite failure. what() is the full message; code() is SQLite's extended
// result code (code() & 0xff is the primary one: SQLITE_NOTADB, ...).
class Error : public std::runtime_error {
 public:
  Error(const std::string& message, int code, std::string detail)
      : std::runtime_error(message), code_(code), detail_(std::move(detail)) {}
  int code() const { return code_; }
  // SQLite's own message, without the context ("file is not a database").
  const std::string& detail() const { return detail_; }

 private:
  int code_;
  std::string detail_;
};

// One connection. Not copyable or movable: its statements point to it.
class Database {
 public:
  Database() = default;
  // See open().
  Database(const std::string& filename, int flags, std::string context,
           std::string_view what = "cannot open");
  // Closes with sqlite3_close_v2: statements still alive may be finalized
  // after it, and the connection closes with the last of them.
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Opens `filename` with sqlite3_open_v2 `flags` (with SQLITE_OPEN_URI it
  // may be a "file:" URI). `context` begins every error message of this
  // connection and its statements. Throws Error "<context>: <what>: ..."
  // and keeps nothing open when it fails.
  void open(const std::string& filename, int flags, std::string context,
            std::string_view what = "cannot open");
  bool is_open() const { return db_ != nullptr; }
  // Waits up to `ms` for another connection's lock instead of failing busy.
  void busy_timeout(int ms);
  // Runs one or more statements; errors name `what` (the SQL if not given).
  void exec(const std::string& sql);
  void exec(const std::string& sql, std::string_view what);
  // Closes now; throws Error "<context>: closing: ..." while statements are
  // alive. A closed Database may be opened again.
  void close();

  // The message and extended code of the connection's last error.
  std::string errmsg() const;
  int error_code() const;
  // Error "<context>: <what>: <last error>" (": <what>" left out when empty).
  Error error(std::string_view what) const;
  [[noreturn]] void fail(std::string_view what) const { throw error(what); }

  const std::string& context() const { return context_; }
  sqlite3* handle() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::string context_;
};

enum class Prepare {
  kOnce,        // used a few times, then finalized
  kPersistent,  // kept and reused for the connection's life (SQLITE_PREPARE_PERSISTENT)
};

// A prepared statement. Bindings start at 1, columns at 0. Reading a column
// gives views into SQLite's memory, valid until the next step, reset or
// finalize.
class Statement {
 public:
  Statement() = default;
  // Prepares one statement of `sql` on `db`, which must outlive it. Throws
  // Error "<context>: preparing '<sql>': ...".
  Statement(const Database& db, std::string_view sql, Prepare prepare = Prepare::kOnce);
  ~Statement() { finalize(); }
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Copies `text`: it may change or die right after the call.
  void bind_text(int index, std::string_view text);
  // Does not copy: `text` must stay alive and unchanged until reset() (which
  // clears the bindings), finalize() or the index is bound again. For hot paths.
  void bind_text_borrowed(int index, std::string_view text);
  void bind_blob(int index, std::string_view bytes);  // copies
  void bind_int64(int index, int64_t value);
  void bind_double(int index, double value);
  void bind_null(int index);

  // True when a row is ready, false when done. Errors throw Error naming
  // `what`, or the statement's SQL when `what` is empty.
  bool step(std::string_view what = {});
  // As step(), the error naming describe() (-> std::string), which is only
  // called on failure: for names that cost a format on a hot path.
  template <class Describe>
  requires std::invocable<Describe&>
  bool step(Describe&& describe) {
    const Result result = step_result();
    if (result == Result::kError) db_->fail(describe());
    return result == Result::kRow;
  }

  bool is_null(int column) const;
  std::string_view text(int column) const;  // "" for NULL
  std::string_view blob(int column) const;  // "" for NULL
  int64_t integer(int column) const;
  double real(int column) const;

  // Ready to run again from the start, with every binding cleared to NULL.
  void reset();
  void finalize();
  // The SQL it was prepared from.
  std::string_view sql() const;
  sqlite3_stmt* handle() const { return stmt_; }

 private:
  enum class Result { kRow, kDone, kError };
  Result step_result();

  const Database* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement (and clears its bindings) when the scope ends, however
// it ends, so that no read stays open.
class ResetGuard {
 public:
  explicit ResetGuard(Statement& statement) : statement_(statement) {}
  ~ResetGuard() { statement_.reset(); }
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;

 private:
  Statement& statement_;
};

// A transaction that rolls back unless commit() is called: `begin` is the
// statement that starts it ("BEGIN", "BEGIN IMMEDIATE").
class Transaction {
 public:
  explicit Transaction(Database& db, const std::string& begin = "BEGIN");
  ~Transaction();  // ROLLBACK when not committed; its errors are ignored
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit();

 private:
  Database& db_;
  bool open_ = true;
};

}  // namespace vitrine::sql
