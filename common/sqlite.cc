// The SQLite helper (see sqlite.h): thin calls into the C API, and the one
// place that words its errors.
#include "common/sqlite.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <utility>

namespace vitrine::sql {

// ---------------------------------------------------------------- Database

Database::Database(const std::string& filename, int flags, std::string context,
                   std::string_view what) {
  open(filename, flags, std::move(context), what);
}

Database::~Database() {
  sqlite3_close_v2(db_);
}

void Database::open(const std::string& filename, int flags, std::string context,
                    std::string_view what) {
  if (db_ != nullptr) throw std::logic_error(fmt::format("{}: opened twice", context_));
  context_ = std::move(context);
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(filename.c_str(), &db, flags, nullptr);
  db_ = db;  // even on failure: it holds the message (or is null: out of memory)
  if (rc != SQLITE_OK) {
    const Error failure = error(what);
    sqlite3_close(db_);
    db_ = nullptr;
    throw failure;
  }
}

void Database::busy_timeout(int ms) {
  sqlite3_busy_timeout(db_, ms);
}

void Database::exec(const std::string& sql) {
  exec(sql, sql);
}

void Database::exec(const std::string& sql, std::string_view what) {
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) fail(what);
}

void Database::close() {
  if (sqlite3_close(db_) != SQLITE_OK) fail("closing");
  db_ = nullptr;
}

std::string Database::errmsg() const {
  return db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
}

int Database::error_code() const {
  return db_ != nullptr ? sqlite3_extended_errcode(db_) : SQLITE_NOMEM;
}

Error Database::error(std::string_view what) const {
  std::string detail = errmsg();
  std::string message = what.empty() ? fmt::format("{}: {}", context_, detail)
                                     : fmt::format("{}: {}: {}", context_, what, detail);
  return Error(message, error_code(), std::move(detail));
}

// ---------------------------------------------------------------- Statement

Statement::Statement(const Database& db, std::string_view sql, Prepare prepare) : db_(&db) {
  const unsigned flags = prepare == Prepare::kPersistent ? SQLITE_PREPARE_PERSISTENT : 0;
  if (sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()), flags, &stmt_,
                         nullptr) != SQLITE_OK) {
    db.fail(fmt::format("preparing '{}'", sql));
  }
}

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    finalize();
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

void Statement::bind_text(int index, std::string_view text) {
  sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

void Statement::bind_text_borrowed(int index, std::string_view text) {
  sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

void Statement::bind_blob(int index, std::string_view bytes) {
  sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
}

void Statement::bind_int64(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
}

void Statement::bind_double(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
}

void Statement::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
}

Statement::Result Statement::step_result() {
  const int rc = sqlite3_step(stmt_);
  return rc == SQLITE_ROW ? Result::kRow : rc == SQLITE_DONE ? Result::kDone : Result::kError;
}

bool Statement::step(std::string_view what) {
  const Result result = step_result();
  if (result == Result::kError) db_->fail(what.empty() ? sql() : what);
  return result == Result::kRow;
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::string_view Statement::text(int column) const {
  // column_text first: column_bytes then counts the bytes of that form.
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  if (data == nullptr) return {};
  return std::string_view(data, static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::string_view Statement::blob(int column) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  if (data == nullptr) return {};
  return std::string_view(data, static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

int64_t Statement::integer(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

double Statement::real(int column) const {
  return sqlite3_column_double(stmt_, column);
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

void Statement::finalize() {
  sqlite3_finalize(stmt_);
  stmt_ = nullptr;
}

std::string_view Statement::sql() const {
  const char* text = stmt_ != nullptr ? sqlite3_sql(stmt_) : nullptr;
  return text != nullptr ? std::string_view(text) : std::string_view();
}

// ---------------------------------------------------------------- Transaction

Transaction::Transaction(Database& db, const std::string& begin) : db_(db) {
  db_.exec(begin);
}

Transaction::~Transaction() {
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace vitrine::sql
