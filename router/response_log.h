// The daemon's log of responses and the feedback users give on them, kept in
// SQLite (WAL mode, so `vitrine ab-report` can read while the daemon
// writes), and the A/B report computed from it.
//
// Tables (readable with the sqlite3 shell):
//   responses(response_id PRIMARY KEY, unix_ms, user_id, input, route, agent,
//             adapter, adapter_version, experiment, arm, output,
//             prompt_tokens, completion_tokens, queue_ms, first_token_ms,
//             total_ms, finish_reason, status_code, error_message)
//   feedback(id, response_id -> responses, rating, comment, unix_ms)
// The file is marked as a response log by PRAGMA application_id
// (kResponseLogApplicationId) and versioned by PRAGMA user_version
// (kResponseLogSchemaVersion).
//
// Feedback: every feedback row is kept; the report counts the latest one per
// response (greatest unix_ms, then the later write), so a user who changes
// their mind moves a response from down to up and is counted once.
//
// Thread-safe: one connection behind a mutex (a row per request is a few
// hundred microseconds). Not goals: retention or rotation, several writer
// processes, storing the prompt the model saw (the input and the route
// rebuild it).
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/sqlite.h"

namespace vitrine::router {

// "vtrl": PRAGMA application_id of a response log.
inline constexpr int32_t kResponseLogApplicationId = 0x7674726c;
// PRAGMA user_version this build writes; it refuses logs of a newer one.
inline constexpr int32_t kResponseLogSchemaVersion = 1;

struct ResponseRecord {
  std::string response_id;       // required; unique
  int64_t unix_ms = 0;           // when the request arrived
  std::string user_id;           // "" for an anonymous request
  std::string input;             // the user's text
  std::string route;             // "describe", "qa", "base", or "none" (no model: an unknown
                                 // product, said)
  std::string agent;             // the agent that answered
  std::string adapter;           // adapter name; "" for the base model
  int64_t adapter_version = -1;  // -1: the base model
  std::string experiment;        // "" when in no experiment
  std::string arm;               // "" when in no experiment
  std::string output;            // the generated text (partial on errors)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double queue_ms = 0;         // waiting for a generation slot
  double first_token_ms = -1;  // arrival to first token; < 0: no token (stored as NULL)
  double total_ms = 0;         // arrival to the last byte sent
  std::string finish_reason;   // "stop", "length", "cancelled", ...
  int status_code = 0;         // the gRPC status code sent (0: OK)
  std::string error_message;   // "" when OK
};

// Longest feedback comment kept; longer ones are refused, not cut.
inline constexpr size_t kMaxCommentBytes = 4096;

struct Feedback {
  std::string response_id;  // must be logged
  int rating = 0;           // -1 (bad) or 1 (good)
  std::string comment;      // at most kMaxCommentBytes
  int64_t unix_ms = 0;
};

class ResponseLog {
 public:
  // Opens or creates the log. Throws std::runtime_error naming the file when
  // it cannot be opened, is not a response log, or has a newer schema.
  explicit ResponseLog(const std::filesystem::path& file);
  ~ResponseLog();
  ResponseLog(const ResponseLog&) = delete;
  ResponseLog& operator=(const ResponseLog&) = delete;

  // Throws std::invalid_argument when response_id is empty or already logged.
  void record(const ResponseRecord& response);
  // Throws vitrine::NotFoundError naming the id when the response is not
  // logged, std::invalid_argument when the rating is not -1 or 1.
  void add_feedback(const Feedback& feedback);

  std::optional<ResponseRecord> find(const std::string& response_id);
  // The response's feedback, oldest first.
  std::vector<Feedback> feedback(const std::string& response_id);

  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  std::mutex mutex_;
  sql::Database db_;
};

// Percentiles by nearest rank: the smallest logged value with at least p% of
// the values at or below it (always a value that occurred).
struct Percentiles {
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

// One (experiment, arm) of the report. Responses in no experiment are grouped
// under experiment "" and arm = their route. Latencies and token counts are
// over the OK responses (status_code 0) only; absent when there are none.
struct AbReportRow {
  std::string experiment;
  std::string arm;
  int64_t requests = 0;
  int64_t errors = 0;                 // status_code != 0
  int64_t ratings_up = 0;             // responses whose latest rating is 1
  int64_t ratings_down = 0;           // ... is -1
  std::optional<double> mean_rating;  // (up - down) / (up + down), in [-1, 1]
  std::optional<Percentiles> total_ms;
  std::optional<Percentiles> first_token_ms;  // over OK responses that produced a token
  std::optional<double> completion_tokens_mean;
  std::optional<double> completion_tokens_p50;
};

// Reads the log at `db` read-only; rows sorted by (experiment, arm). Throws
// std::runtime_error naming the file when it is missing or not a response log.
std::vector<AbReportRow> ab_report(const std::filesystem::path& db);
// A fixed-width text table, one line per row after a header; "-" for absent
// values, "(none)" for the experiment of responses in none.
std::string format_ab_report(const std::vector<AbReportRow>& rows);
// {"percentiles": "nearest-rank", "rows": [{experiment, arm, requests, ...}]},
// null for absent values.
nlohmann::json ab_report_json(const std::vector<AbReportRow>& rows);

}  // namespace vitrine::router
