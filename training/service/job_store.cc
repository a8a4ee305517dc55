#include "training/service/job_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <stdexcept>

namespace vitrine::trainer {
namespace {

// A prepared statement that finalises itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql, const std::filesystem::path& file) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw std::runtime_error(
          fmt::format("job store '{}': {} ({})", file.string(), sqlite3_errmsg(db), sql));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, int64_t value) { sqlite3_bind_int64(stmt_, i, value); }
  void bind_blob(int i, const std::string& bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  }
  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error(fmt::format("job store: {}", sqlite3_errmsg(db_)));
  }
  std::string blob(int column) {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    return std::string(data == nullptr ? "" : data,
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  int64_t integer(int column) { return sqlite3_column_int64(stmt_, column); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

JobStore::JobStore(const std::filesystem::path& file) : file_(file) {
  if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) {
    const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error(fmt::format("cannot open job store '{}': {}", file.string(), why));
  }
  sqlite3_busy_timeout(db_, 5000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=NORMAL");
  exec(
      "CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT "
      "NULL, name TEXT, state TEXT, created_ms INTEGER, started_ms INTEGER, finished_ms INTEGER, "
      "error TEXT, run_dir TEXT, job BLOB NOT NULL)");
  exec(
      "CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, sequence INTEGER NOT NULL, "
      "unix_ms INTEGER, event BLOB NOT NULL, PRIMARY KEY (job_id, sequence))");
}

JobStore::~JobStore() {
  sqlite3_close(db_);
}

void JobStore::exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string why = error != nullptr ? error : "unknown error";
    sqlite3_free(error);
    throw std::runtime_error(fmt::format("job store '{}': {}", file_.string(), why));
  }
}

void JobStore::put(const v1::Job& job) {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              "INSERT INTO jobs (id, name, state, created_ms, started_ms, finished_ms, error, "
              "run_dir, job) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO "
              "UPDATE SET name = ?2, state = ?3, created_ms = ?4, started_ms = ?5, finished_ms = "
              "?6, error = ?7, run_dir = ?8, job = ?9",
              file_);
  s.bind(1, job.id());
  s.bind(2, job.name());
  s.bind(3, v1::JobState_Name(job.state()));
  s.bind(4, job.created_unix_ms());
  s.bind(5, job.started_unix_ms());
  s.bind(6, job.finished_unix_ms());
  s.bind(7, job.error());
  s.bind(8, job.run_dir());
  s.bind_blob(9, job.SerializeAsString());
  s.step();
}

std::optional<v1::Job> JobStore::get(const std::string& id) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "SELECT job FROM jobs WHERE id = ?1", file_);
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  v1::Job job;
  if (!job.ParseFromString(s.blob(0))) {
    throw std::runtime_error(
        fmt::format("job store '{}': job '{}' is corrupt", file_.string(), id));
  }
  return job;
}

std::vector<v1::Job> JobStore::list() {
  std::lock_guard lock(mutex_);
  Statement s(db_, "SELECT job FROM jobs ORDER BY seq", file_);
  std::vector<v1::Job> jobs;
  while (s.step()) {
    if (!jobs.emplace_back().ParseFromString(s.blob(0))) {
      throw std::runtime_error(fmt::format("job store '{}': a job is corrupt", file_.string()));
    }
  }
  return jobs;
}

v1::JobEvent JobStore::append_event(v1::JobEvent event) {
  std::lock_guard lock(mutex_);
  {
    Statement last(db_, "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE job_id = ?1", file_);
    last.bind(1, event.job_id());
    last.step();
    event.set_sequence(last.integer(0) + 1);
  }
  Statement s(db_, "INSERT INTO events (job_id, sequence, unix_ms, event) VALUES (?1, ?2, ?3, ?4)",
              file_);
  s.bind(1, event.job_id());
  s.bind(2, event.sequence());
  s.bind(3, event.unix_ms());
  s.bind_blob(4, event.SerializeAsString());
  s.step();
  return event;
}

std::vector<v1::JobEvent> JobStore::events(const std::string& job_id, int64_t after) {
  std::lock_guard lock(mutex_);
  Statement s(db_, "SELECT event FROM events WHERE job_id = ?1 AND sequence > ?2 ORDER BY sequence",
              file_);
  s.bind(1, job_id);
  s.bind(2, after);
  std::vector<v1::JobEvent> out;
  while (s.step()) {
    if (!out.emplace_back().ParseFromString(s.blob(0))) {
      throw std::runtime_error(
          fmt::format("job store '{}': an event of '{}' is corrupt", file_.string(), job_id));
    }
  }
  return out;
}

}  // namespace vitrine::trainer
