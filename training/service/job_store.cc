#include "training/service/job_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <stdexcept>

namespace vitrine::trainer {
namespace {

// A serialised message read from a BLOB column (valid until the next step).
bool parse(google::protobuf::MessageLite& message, std::string_view bytes) {
  return message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

}  // namespace

JobStore::JobStore(const std::filesystem::path& file) : file_(file) {
  try {
    db_.open(file.string(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
             fmt::format("job store '{}'", file.string()));
  } catch (const sql::Error& error) {
    throw std::runtime_error(
        fmt::format("cannot open job store '{}': {}", file.string(), error.detail()));
  }
  db_.busy_timeout(5000);
  // An empty `what`: these errors read "job store '<file>': <SQLite's message>".
  db_.exec("PRAGMA journal_mode=WAL", "");
  db_.exec("PRAGMA synchronous=NORMAL", "");
  db_.exec(
      "CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT "
      "NULL, name TEXT, state TEXT, created_ms INTEGER, started_ms INTEGER, finished_ms INTEGER, "
      "error TEXT, run_dir TEXT, job BLOB NOT NULL)",
      "");
  db_.exec(
      "CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, sequence INTEGER NOT NULL, "
      "unix_ms INTEGER, event BLOB NOT NULL, PRIMARY KEY (job_id, sequence))",
      "");
}

JobStore::~JobStore() = default;

void JobStore::put(const v1::Job& job) {
  std::lock_guard lock(mutex_);
  sql::Statement s(db_,
                   "INSERT INTO jobs (id, name, state, created_ms, started_ms, finished_ms, error, "
                   "run_dir, job) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO "
                   "UPDATE SET name = ?2, state = ?3, created_ms = ?4, started_ms = ?5, "
                   "finished_ms = ?6, error = ?7, run_dir = ?8, job = ?9");
  s.bind_text(1, job.id());
  s.bind_text(2, job.name());
  s.bind_text(3, v1::JobState_Name(job.state()));
  s.bind_int64(4, job.created_unix_ms());
  s.bind_int64(5, job.started_unix_ms());
  s.bind_int64(6, job.finished_unix_ms());
  s.bind_text(7, job.error());
  s.bind_text(8, job.run_dir());
  s.bind_blob(9, job.SerializeAsString());
  s.step();
}

std::optional<v1::Job> JobStore::get(const std::string& id) {
  std::lock_guard lock(mutex_);
  sql::Statement s(db_, "SELECT job FROM jobs WHERE id = ?1");
  s.bind_text(1, id);
  if (!s.step()) return std::nullopt;
  v1::Job job;
  if (!parse(job, s.blob(0))) {
    throw std::runtime_error(
        fmt::format("job store '{}': job '{}' is corrupt", file_.string(), id));
  }
  return job;
}

std::vector<v1::Job> JobStore::list() {
  std::lock_guard lock(mutex_);
  sql::Statement s(db_, "SELECT job FROM jobs ORDER BY seq");
  std::vector<v1::Job> jobs;
  while (s.step()) {
    if (!parse(jobs.emplace_back(), s.blob(0))) {
      throw std::runtime_error(fmt::format("job store '{}': a job is corrupt", file_.string()));
    }
  }
  return jobs;
}

v1::JobEvent JobStore::append_event(v1::JobEvent event) {
  std::lock_guard lock(mutex_);
  {
    sql::Statement last(db_, "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE job_id = ?1");
    last.bind_text(1, event.job_id());
    last.step();
    event.set_sequence(last.integer(0) + 1);
  }
  sql::Statement s(db_,
                   "INSERT INTO events (job_id, sequence, unix_ms, event) VALUES (?1, ?2, ?3, ?4)");
  s.bind_text(1, event.job_id());
  s.bind_int64(2, event.sequence());
  s.bind_int64(3, event.unix_ms());
  s.bind_blob(4, event.SerializeAsString());
  s.step();
  return event;
}

std::vector<v1::JobEvent> JobStore::events(const std::string& job_id, int64_t after) {
  std::lock_guard lock(mutex_);
  sql::Statement s(
      db_, "SELECT event FROM events WHERE job_id = ?1 AND sequence > ?2 ORDER BY sequence");
  s.bind_text(1, job_id);
  s.bind_int64(2, after);
  std::vector<v1::JobEvent> out;
  while (s.step()) {
    if (!parse(out.emplace_back(), s.blob(0))) {
      throw std::runtime_error(
          fmt::format("job store '{}': an event of '{}' is corrupt", file_.string(), job_id));
    }
  }
  return out;
}

}  // namespace vitrine::trainer
