#include "router/response_log.h"

#include <fmt/format.h>
#include <sqlite3.h>  // SQLITE_OPEN_* flags, SQLITE_NOTADB

#include <algorithm>
#include <map>
#include <stdexcept>
#include <utility>

#include "common/errors.h"

namespace vitrine::router {
namespace {

namespace fs = std::filesystem;

// What every SQLite error of the log at `file` begins with.
std::string context(const fs::path& file) {
  return fmt::format("response log '{}'", file.string());
}

// An error on a file that SQLite does not read at all says what it is not.
void throw_if_not_a_database(const sql::Error& error, const fs::path& file) {
  if ((error.code() & 0xff) == SQLITE_NOTADB) {
    throw std::runtime_error(
        fmt::format("'{}' is not a vitrine response log (not an SQLite database)", file.string()));
  }
}

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

void open_database(sql::Database& db, const fs::path& file, int flags) {
  try {
    db.open(file.string(), flags, context(file));
  } catch (const sql::Error& error) {
    throw std::runtime_error(
        fmt::format("cannot open response log '{}': {}", file.string(), error.detail()));
  }
  db.busy_timeout(5000);
}

// The first column of the first row of `query`; 0 when there is none.
int64_t first_integer(const sql::Database& db, const char* query) {
  sql::Statement q(db, query);
  return q.step() ? q.integer(0) : 0;
}

// Throws unless `db` is a response log this build reads. True when it is a
// new, empty database (which only the writer may make one of).
bool check_identity(const sql::Database& db, const fs::path& file) {
  const int64_t application_id = first_integer(db, "PRAGMA application_id");
  const int64_t version = first_integer(db, "PRAGMA user_version");
  const int64_t tables = first_integer(db, "SELECT count(*) FROM sqlite_master");
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

bool response_exists(const sql::Database& db, const std::string& id) {
  sql::Statement q(db, "SELECT 1 FROM responses WHERE response_id = ?1");
  q.bind_text(1, id);
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
  open_database(db_, file, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  try {
    {
      // The check and the creation in one write transaction, so two
      // processes opening a new file do not both create the tables.
      sql::Transaction transaction(db_, "BEGIN IMMEDIATE");
      if (check_identity(db_, file_)) {
        db_.exec(kCreateSchema);
        db_.exec(fmt::format("PRAGMA application_id = {}", kResponseLogApplicationId));
        db_.exec(fmt::format("PRAGMA user_version = {}", kResponseLogSchemaVersion));
      }
      transaction.commit();
    }
    // Only once the file is known to be ours: these change the file.
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA synchronous=NORMAL");
    db_.exec("PRAGMA foreign_keys=ON");
  } catch (const sql::Error& error) {
    throw_if_not_a_database(error, file_);
    throw;
  }
}

ResponseLog::~ResponseLog() = default;

void ResponseLog::record(const ResponseRecord& r) {
  if (r.response_id.empty()) {
    throw std::invalid_argument("a logged response needs a response_id");
  }
  std::lock_guard lock(mutex_);
  if (response_exists(db_, r.response_id)) {
    throw std::invalid_argument(fmt::format("response '{}' is already in the response log '{}'",
                                            r.response_id, file_.string()));
  }
  sql::Statement q(
      db_,
      "INSERT INTO responses (response_id, unix_ms, user_id, input, route, agent, adapter, "
      "adapter_version, experiment, arm, output, prompt_tokens, completion_tokens, queue_ms, "
      "first_token_ms, total_ms, finish_reason, status_code, error_message) VALUES (?1, ?2, "
      "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)");
  q.bind_text(1, r.response_id);
  q.bind_int64(2, r.unix_ms);
  q.bind_text(3, r.user_id);
  q.bind_text(4, r.input);
  q.bind_text(5, r.route);
  q.bind_text(6, r.agent);
  q.bind_text(7, r.adapter);
  q.bind_int64(8, r.adapter_version);
  q.bind_text(9, r.experiment);
  q.bind_text(10, r.arm);
  q.bind_text(11, r.output);
  q.bind_int64(12, r.prompt_tokens);
  q.bind_int64(13, r.completion_tokens);
  q.bind_double(14, r.queue_ms);
  if (r.first_token_ms < 0) {
    q.bind_null(15);
  } else {
    q.bind_double(15, r.first_token_ms);
  }
  q.bind_double(16, r.total_ms);
  q.bind_text(17, r.finish_reason);
  q.bind_int64(18, r.status_code);
  q.bind_text(19, r.error_message);
  q.step();
}

void ResponseLog::add_feedback(const Feedback& f) {
  if (f.comment.size() > kMaxCommentBytes) {
    throw std::invalid_argument(
        fmt::format("feedback on response '{}': comment of {} bytes, more than the limit of {}",
                    f.response_id.substr(0, 64), f.comment.size(), kMaxCommentBytes));
  }
  if (f.rating != -1 && f.rating != 1) {
    throw std::invalid_argument(fmt::format(
        "feedback on response '{}': rating must be -1 or 1 (got {})", f.response_id, f.rating));
  }
  std::lock_guard lock(mutex_);
  if (!response_exists(db_, f.response_id)) {
    throw NotFoundError(
        fmt::format("feedback on response '{}': no such response in the log", f.response_id));
  }
  sql::Statement q(
      db_, "INSERT INTO feedback (response_id, rating, comment, unix_ms) VALUES (?1, ?2, ?3, ?4)");
  q.bind_text(1, f.response_id);
  q.bind_int64(2, f.rating);
  q.bind_text(3, f.comment);
  q.bind_int64(4, f.unix_ms);
  q.step();
}

std::optional<ResponseRecord> ResponseLog::find(const std::string& response_id) {
  std::lock_guard lock(mutex_);
  sql::Statement q(
      db_,
      "SELECT response_id, unix_ms, user_id, input, route, agent, adapter, adapter_version, "
      "experiment, arm, output, prompt_tokens, completion_tokens, queue_ms, first_token_ms, "
      "total_ms, finish_reason, status_code, error_message FROM responses WHERE "
      "response_id = ?1");
  q.bind_text(1, response_id);
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
  sql::Statement q(db_,
                   "SELECT response_id, rating, comment, unix_ms FROM feedback WHERE response_id = "
                   "?1 ORDER BY id");
  q.bind_text(1, response_id);
  std::vector<Feedback> out;
  while (q.step()) {
    out.push_back(Feedback{std::string(q.text(0)), static_cast<int>(q.integer(1)),
                           std::string(q.text(2)), q.integer(3)});
  }
  return out;
}

std::vector<AbReportRow> ab_report(const fs::path& db_file) {
  if (!fs::exists(db_file)) {
    throw std::runtime_error(fmt::format("response log '{}' does not exist", db_file.string()));
  }
  struct Group {
    AbReportRow row;
    std::vector<double> total_ms, first_token_ms, completion_tokens;
  };
  std::map<std::pair<std::string, std::string>, Group> groups;
  {
    sql::Database db;  // closed at the end of this block, before the arithmetic
    open_database(db, db_file, SQLITE_OPEN_READONLY);
    try {
      if (check_identity(db, db_file)) {
        throw std::runtime_error(fmt::format(
            "'{}' is not a vitrine response log (an empty database)", db_file.string()));
      }
      // The latest feedback of each response is its rating.
      sql::Statement q(
          db,
          "SELECT r.experiment, CASE WHEN r.experiment = '' THEN r.route ELSE r.arm END, "
          "r.status_code, r.total_ms, r.first_token_ms, r.completion_tokens, (SELECT f.rating "
          "FROM feedback f WHERE f.response_id = r.response_id ORDER BY f.unix_ms DESC, f.id "
          "DESC LIMIT 1) FROM responses r");
      while (q.step()) {
        Group& g = groups[{std::string(q.text(0)), std::string(q.text(1))}];
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
    } catch (const sql::Error& error) {
      throw_if_not_a_database(error, db_file);
      throw;
    }
  }

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
