// The trainer service's jobs and their events, kept in SQLite so a restart
// of the service loses nothing: a job that was running is found RUNNING
// and resumed.
//
// Tables (readable with the sqlite3 shell):
//   jobs(id, name, state, created_ms, started_ms, finished_ms, error,
//        run_dir, job)        job: the whole vitrine.v1.Job, serialised
//   events(job_id, sequence, unix_ms, event)   event: a vitrine.v1.JobEvent
// Thread-safe: one connection behind a mutex (the service writes a few rows
// a second at most).
#pragma once

#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

#include "common/sqlite.h"
#include "vitrine/v1/trainer.pb.h"

namespace vitrine::trainer {

class JobStore {
 public:
  // Opens or creates the database. Throws std::runtime_error naming the
  // file when it cannot.
  explicit JobStore(const std::filesystem::path& file);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Inserts or replaces the job's row.
  void put(const v1::Job& job);
  std::optional<v1::Job> get(const std::string& id);
  // All jobs in the order they were submitted.
  std::vector<v1::Job> list();
  // Appends an event; gives it the job's next sequence number and returns it.
  v1::JobEvent append_event(v1::JobEvent event);
  // The job's events with sequence > after, in order.
  std::vector<v1::JobEvent> events(const std::string& job_id, int64_t after);

 private:
  std::filesystem::path file_;
  std::mutex mutex_;
  sql::Database db_;
};

}  // namespace vitrine::trainer
