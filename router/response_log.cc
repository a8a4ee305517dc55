#include "router/response_log.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <utility>

#include "common/errors.h"

namespace vitrine::router {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(sqlite3* db, const fs::path& file, std::string_view doing) {
  if (sqlite3_errcode(db) == SQLITE_NOTADB) {
    throw std::runtime_error(
        fmt::format("'{}' is not a vitrine response log (not an SQLite database)", file.string()));
  }
  throw std::runtime_error(
      fmt::format("response log '{}': {}: {}", file.string(), doing, sqlite3_errmsg(db)));
}

void exec(sqlite3* db, const fs::path& file, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    sqlite3_free(error);  // sqlite3_errmsg still holds it
    fail(db, file, sql);
  }
}

// A prepared statement that finalises itself.
class Query {
 public:
  Query(sqlite3* db, const fs::path& file, const char* sql) : db_(db), file_(file), sql_(sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) fail(db, file, sql);
  }
  ~Query() { sqlite3_finalize(stmt_); }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  void bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, int64_t value) { sqlite3_bind_int64(stmt_, i, value); }
  void bind(int i, double value) { sqlite3_bind_double(stmt_, i, value); }
  void bind_null(int i) { sqlite3_bind_null(stmt_, i); }
  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(db_, file_, sql_);
  }
  bool is_null(int column) { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  std::string text(int column) {
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return std::string(data == nullptr ? "" : data,
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  int64_t integer(int column) { return sqlite3_column_int64(stmt_, column); }
  double real(int column) { return sqlite3_column_double(stmt_, column); }

 private:
  sqlite3* db_;
  const fs::path& file_;
  const char* sql_;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* kCreateSchema =
    "CREATE TABLE responses (response_id TEXT PRIMARY KEY NOT NULL, unix_ms INTEGER NOT NULL, "
    "user_id TEXT NOT NULL, input TEXT NOT NULL, route TEXT NOT NULL, agent TEXT NOT NULL, "
    "adapter TEXT NOT NULL, adapter_version INTEGER NOT NULL, experiment TEXT NOT NULL, "
    "arm TEXT NOT NULL, output TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
    "completion_tokens INTEGER NOT NULL, queue_ms REAL NOT NULL, first_token_ms REAL, "
    "total_ms REAL NOT NULL, finish_reason TEXT NOT NULL, status_code INTEGER NOT NULL, "
    "error_message TEXT NOT NULL);"
    "CREATE INDEX responses_by_experiment ON responses (experiment, arm);"
    "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, response_id TEXT NOT NULL "
    "REFERENCES responses (response_id), rating INTEGER NOT NULL CHECK (rating IN (-1, 1)), "
    "comment TEXT NOT NULL, unix_ms INTEGER NOT NULL);"
    "CREATE INDEX feedback_by_response ON feedback (response_id, unix_ms, id);";

sqlite3* open_database(const fs::path& file, int flags) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    const std::string why = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw std::runtime_error(fmt::format("cannot open response log '{}': {}", file.string(), why));
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

// Throws unless `db` is a response log this build reads. True when it is a
// new, empty database (which only the writer may make one of).
bool check_identity(sqlite3* db, const fs::path& file) {
  int64_t application_id = 0;
  int64_t version = 0;
  int64_t tables = 0;
  {
    Query q(db, file, "PRAGMA application_id");
    if (q.step()) application_id = q.integer(0);
  }
  {
    Query q(db, file, "PRAGMA user_version");
    if (q.step()) version = q.integer(0);
  }
  {
    Query q(db, file, "SELECT count(*) FROM sqlite_master");
    if (q.step()) tables = q.integer(0);
  }
  if (application_id == 0 && version == 0 && tables == 0) return true;
  if (application_id != kResponseLogApplicationId) {
    throw std::runtime_error(fmt::format(
        "'{}' is not a vitrine response log (an SQLite database with application_id {:#x}, "
        "not {:#x}): wrong --log file?",
        file.string(), application_id, kResponseLogApplicationId));
  }
  if (version > kResponseLogSchemaVersion) {
    throw std::runtime_error(
        fmt::format("response log '{}' has schema version {}; this vitrine reads up to version {}: "
                    "upgrade vitrine",
                    file.string(), version, kResponseLogSchemaVersion));
  }
  return false;
}

bool response_exists(sqlite3* db, const fs::path& file, const std::string& id) {
  Query q(db, file, "SELECT 1 FROM responses WHERE response_id = ?1");
  q.bind(1, id);
  return q.step();
}

// The nearest-rank percentile of sorted values: the value at rank
// ceil(p / 100 * n), in integers so that 90% of 10 is exactly rank 9.
double nearest_rank(const std::vector<double>& sorted, int percent) {
  const size_t n = sorted.size();
  const size_t rank = (static_cast<size_t>(percent) * n + 99) / 100;
  return sorted[std::clamp<size_t>(rank, 1, n) - 1];
}

std::optional<Percentiles> percentiles(std::vector<double> values) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  return Percentiles{nearest_rank(values, 50), nearest_rank(values, 90), nearest_rank(values, 99)};
}

}  // namespace

ResponseLog::ResponseLog(const fs::path& file) : file_(file) {
  db_ = open_database(file, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  try {
    // The check and the creation in one write transaction, so two processes
    // opening a new file do not both create the tables.
    exec(db_, file_, "BEGIN IMMEDIATE");
    try {
      if (check_identity(db_, file_)) {
        exec(db_, file_, kCreateSchema);
        exec(db_, file_,
             fmt::format("PRAGMA application_id = {}", kResponseLogApplicationId).c_str());
        exec(db_, file_,
             fmt::format("PRAGMA user_version = {}", kResponseLogSchemaVersion).c_str());
      }
      exec(db_, file_, "COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    // Only once the file is known to be ours: these change the file.
    exec(db_, file_, "PRAGMA journal_mode=WAL");
    exec(db_, file_, "PRAGMA synchronous=NORMAL");
    exec(db_, file_, "PRAGMA foreign_keys=ON");
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

ResponseLog::~ResponseLog() {
  sqlite3_close(db_);
}

void ResponseLog::record(const ResponseRecord& r) {
  if (r.response_id.empty()) {
    throw std::invalid_argument("a logged response needs a response_id");
  }
  std::lock_guard lock(mutex_);
  if (response_exists(db_, file_, r.response_id)) {
    throw std::invalid_argument(fmt::format("response '{}' is already in the response log '{}'",
                                            r.response_id, file_.string()));
  }
  Query q(db_, file_,
          "INSERT INTO responses (response_id, unix_ms, user_id, input, route, agent, adapter, "
          "adapter_version, experiment, arm, output, prompt_tokens, completion_tokens, queue_ms, "
          "first_token_ms, total_ms, finish_reason, status_code, error_message) VALUES (?1, ?2, "
          "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)");
  q.bind(1, r.response_id);
  q.bind(2, r.unix_ms);
  q.bind(3, r.user_id);
  q.bind(4, r.input);
  q.bind(5, r.route);
  q.bind(6, r.agent);
  q.bind(7, r.adapter);
  q.bind(8, r.adapter_version);
  q.bind(9, r.experiment);
  q.bind(10, r.arm);
  q.bind(11, r.output);
  q.bind(12, r.prompt_tokens);
  q.bind(13, r.completion_tokens);
  q.bind(14, r.queue_ms);
  if (r.first_token_ms < 0) {
    q.bind_null(15);
  } else {
    q.bind(15, r.first_token_ms);
  }
  q.bind(16, r.total_ms);
  q.bind(17, r.finish_reason);
  q.bind(18, static_cast<int64_t>(r.status_code));
  q.bind(19, r.error_message);
  q.step();
}

void ResponseLog::add_feedback(const Feedback& f) {
  if (f.rating != -1 && f.rating != 1) {
    throw std::invalid_argument(fmt::format(
        "feedback on response '{}': rating must be -1 or 1 (got {})", f.response_id, f.rating));
  }
  std::lock_guard lock(mutex_);
  if (!response_exists(db_, file_, f.response_id)) {
    throw NotFoundError(
        fmt::format("feedback on response '{}': no such response in the log", f.response_id));
  }
  Query q(db_, file_,
          "INSERT INTO feedback (response_id, rating, comment, unix_ms) VALUES (?1, ?2, ?3, ?4)");
  q.bind(1, f.response_id);
  q.bind(2, static_cast<int64_t>(f.rating));
  q.bind(3, f.comment);
  q.bind(4, f.unix_ms);
  q.step();
}

std::optional<ResponseRecord> ResponseLog::find(const std::string& response_id) {
  std::lock_guard lock(mutex_);
  Query q(db_, file_,
          "SELECT response_id, unix_ms, user_id, input, route, agent, adapter, adapter_version, "
          "experiment, arm, output, prompt_tokens, completion_tokens, queue_ms, first_token_ms, "
          "total_ms, finish_reason, status_code, error_message FROM responses WHERE "
          "response_id = ?1");
  q.bind(1, response_id);
  if (!q.step()) return std::nullopt;
  ResponseRecord r;
  r.response_id = q.text(0);
  r.unix_ms = q.integer(1);
  r.user_id = q.text(2);
  r.input = q.text(3);
  r.route = q.text(4);
  r.agent = q.text(5);
  r.adapter = q.text(6);
  r.adapter_version = q.integer(7);
  r.experiment = q.text(8);
  r.arm = q.text(9);
  r.output = q.text(10);
  r.prompt_tokens = q.integer(11);
  r.completion_tokens = q.integer(12);
  r.queue_ms = q.real(13);
  r.first_token_ms = q.is_null(14) ? -1 : q.real(14);
  r.total_ms = q.real(15);
  r.finish_reason = q.text(16);
  r.status_code = static_cast<int>(q.integer(17));
  r.error_message = q.text(18);
  return r;
}

std::vector<Feedback> ResponseLog::feedback(const std::string& response_id) {
  std::lock_guard lock(mutex_);
  Query q(db_, file_,
          "SELECT response_id, rating, comment, unix_ms FROM feedback WHERE response_id = ?1 "
          "ORDER BY id");
  q.bind(1, response_id);
  std::vector<Feedback> out;
  while (q.step()) {
    out.push_back(Feedback{q.text(0), static_cast<int>(q.integer(1)), q.text(2), q.integer(3)});
  }
  return out;
}

std::vector<AbReportRow> ab_report(const fs::path& db_file) {
  if (!fs::exists(db_file)) {
    throw std::runtime_error(fmt::format("response log '{}' does not exist", db_file.string()));
  }
  sqlite3* db = open_database(db_file, SQLITE_OPEN_READONLY);
  struct Group {
    AbReportRow row;
    std::vector<double> total_ms, first_token_ms, completion_tokens;
  };
  std::map<std::pair<std::string, std::string>, Group> groups;
  try {
    if (check_identity(db, db_file)) {
      throw std::runtime_error(
          fmt::format("'{}' is not a vitrine response log (an empty database)", db_file.string()));
    }
    // The latest feedback of each response is its rating.
    Query q(db, db_file,
            "SELECT r.experiment, CASE WHEN r.experiment = '' THEN r.route ELSE r.arm END, "
            "r.status_code, r.total_ms, r.first_token_ms, r.completion_tokens, (SELECT f.rating "
            "FROM feedback f WHERE f.response_id = r.response_id ORDER BY f.unix_ms DESC, f.id "
            "DESC LIMIT 1) FROM responses r");
    while (q.step()) {
      Group& g = groups[{q.text(0), q.text(1)}];
      g.row.requests++;
      if (!q.is_null(6)) (q.integer(6) > 0 ? g.row.ratings_up : g.row.ratings_down)++;
      if (q.integer(2) != 0) {
        g.row.errors++;
        continue;
      }
      g.total_ms.push_back(q.real(3));
      if (!q.is_null(4)) g.first_token_ms.push_back(q.real(4));
      g.completion_tokens.push_back(static_cast<double>(q.integer(5)));
    }
  } catch (...) {
    sqlite3_close(db);
    throw;
  }
  sqlite3_close(db);

  std::vector<AbReportRow> rows;
  for (auto& [key, g] : groups) {
    AbReportRow& row = g.row;
    row.experiment = key.first;
    row.arm = key.second;
    const int64_t rated = row.ratings_up + row.ratings_down;
    if (rated > 0) {
      row.mean_rating = static_cast<double>(row.ratings_up - row.ratings_down) / rated;
    }
    row.total_ms = percentiles(std::move(g.total_ms));
    row.first_token_ms = percentiles(std::move(g.first_token_ms));
    if (!g.completion_tokens.empty()) {
      double sum = 0;
      for (const double t : g.completion_tokens) sum += t;
      row.completion_tokens_mean = sum / static_cast<double>(g.completion_tokens.size());
      row.completion_tokens_p50 = percentiles(std::move(g.completion_tokens))->p50;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string format_ab_report(const std::vector<AbReportRow>& rows) {
  const std::vector<std::string> header = {"experiment", "arm",         "requests",  "errors",
                                           "up",         "down",        "rating",    "total_p50",
                                           "total_p90",  "total_p99",   "ttft_p50",  "ttft_p90",
                                           "ttft_p99",   "tokens_mean", "tokens_p50"};
  constexpr size_t kTextColumns = 2;  // left-aligned; the rest are numbers
  auto number = [](const std::optional<double>& v, const char* format) {
    return v ? fmt::format(fmt::runtime(format), *v) : std::string("-");
  };
  auto latency = [&](const std::optional<Percentiles>& p, double Percentiles::*field) {
    return p ? fmt::format("{:.1f}", (*p).*field) : std::string("-");
  };
  std::vector<std::vector<std::string>> table{header};
  for (const AbReportRow& r : rows) {
    table.push_back(
        {r.experiment.empty() ? "(none)" : r.experiment, r.arm, std::to_string(r.requests),
         std::to_string(r.errors), std::to_string(r.ratings_up), std::to_string(r.ratings_down),
         number(r.mean_rating, "{:+.2f}"), latency(r.total_ms, &Percentiles::p50),
         latency(r.total_ms, &Percentiles::p90), latency(r.total_ms, &Percentiles::p99),
         latency(r.first_token_ms, &Percentiles::p50), latency(r.first_token_ms, &Percentiles::p90),
         latency(r.first_token_ms, &Percentiles::p99), number(r.completion_tokens_mean, "{:.1f}"),
         number(r.completion_tokens_p50, "{:.0f}")});
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& line : table) {
    for (size_t c = 0; c < line.size(); ++c) widths[c] = std::max(widths[c], line[c].size());
  }
  std::string out;
  for (const auto& line : table) {
    std::string text;
    for (size_t c = 0; c < line.size(); ++c) {
      if (c > 0) text += "  ";
      text += c < kTextColumns ? fmt::format("{:<{}}", line[c], widths[c])
                               : fmt::format("{:>{}}", line[c], widths[c]);
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  }
  if (rows.empty()) out += "(no responses logged)\n";
  out +=
      "latencies in ms over OK responses, nearest-rank percentiles; ttft: time to first token; "
      "rating: (up - down) / rated, latest feedback per response\n";
  return out;
}

nlohmann::json ab_report_json(const std::vector<AbReportRow>& rows) {
  auto optional = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nullptr; };
  auto percentiles_json = [](const std::optional<Percentiles>& p) {
    return p ? nlohmann::json{{"p50", p->p50}, {"p90", p->p90}, {"p99", p->p99}}
             : nlohmann::json(nullptr);
  };
  nlohmann::json list = nlohmann::json::array();
  for (const AbReportRow& r : rows) {
    list.push_back({{"experiment", r.experiment},
                    {"arm", r.arm},
                    {"requests", r.requests},
                    {"errors", r.errors},
                    {"ratings_up", r.ratings_up},
                    {"ratings_down", r.ratings_down},
                    {"mean_rating", optional(r.mean_rating)},
                    {"total_ms", percentiles_json(r.total_ms)},
                    {"first_token_ms", percentiles_json(r.first_token_ms)},
                    {"completion_tokens_mean", optional(r.completion_tokens_mean)},
                    {"completion_tokens_p50", optional(r.completion_tokens_p50)}});
  }
  return {{"percentiles", "nearest-rank"}, {"rows", std::move(list)}};
}

}  // namespace vitrine::router
