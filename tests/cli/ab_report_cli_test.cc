// `vitrine ab-report` as users run it: the table and the JSON of a log with
// known latencies, and exit 1 with a message naming the file otherwise.
//
// The log is written here with SQLite itself in the documented on-disk
// format of schema version 1 (router/response_log.h): this suite does not
// link the router library, and a log written by an older daemon must keep
// reading the same.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using testing::CliRun;
using testing::run_vitrine;
using testing::TempDir;

class LogWriter {
 public:
  explicit LogWriter(const fs::path& file) {
    EXPECT_EQ(sqlite3_open(file.c_str(), &db_), SQLITE_OK);
    exec(
        "PRAGMA application_id = 1987342956;"  // 0x7674726c, "vtrl"
        "PRAGMA user_version = 1;"
        "CREATE TABLE responses (response_id TEXT PRIMARY KEY NOT NULL, unix_ms INTEGER NOT "
        "NULL, user_id TEXT NOT NULL, input TEXT NOT NULL, route TEXT NOT NULL, agent TEXT NOT "
        "NULL, adapter TEXT NOT NULL, adapter_version INTEGER NOT NULL, experiment TEXT NOT NULL, "
        "arm TEXT NOT NULL, output TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
        "completion_tokens INTEGER NOT NULL, queue_ms REAL NOT NULL, first_token_ms REAL, "
        "total_ms REAL NOT NULL, finish_reason TEXT NOT NULL, status_code INTEGER NOT NULL, "
        "error_message TEXT NOT NULL);"
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, response_id TEXT NOT NULL "
        "REFERENCES responses (response_id), rating INTEGER NOT NULL CHECK (rating IN (-1, 1)), "
        "comment TEXT NOT NULL, unix_ms INTEGER NOT NULL);");
  }
  ~LogWriter() { sqlite3_close(db_); }

  void response(const std::string& id, const std::string& route, const std::string& experiment,
                const std::string& arm, double total_ms, int tokens, int status_code = 0) {
    exec(fmt_response(id, route, experiment, arm, total_ms, tokens, status_code));
  }
  void rating(const std::string& id, int rating, int unix_ms) {
    exec("INSERT INTO feedback (response_id, rating, comment, unix_ms) VALUES ('" + id + "', " +
         std::to_string(rating) + ", '', " + std::to_string(unix_ms) + ")");
  }

 private:
  static std::string fmt_response(const std::string& id, const std::string& route,
                                  const std::string& experiment, const std::string& arm,
                                  double total_ms, int tokens, int status_code) {
    std::ostringstream s;
    s << "INSERT INTO responses VALUES ('" << id << "', 0, 'u-" << id << "', 'in', '" << route
      << "', 'qa', 'qa', 1, '" << experiment << "', '" << arm << "', 'out', 30, " << tokens
      << ", 0.5, " << total_ms / 4 << ", " << total_ms << ", 'stop', " << status_code << ", '')";
    return s.str();
  }
  void exec(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "") << "\n"
        << sql;
    sqlite3_free(error);
  }
  sqlite3* db_ = nullptr;
};

// Arm "tuned": 10 OK responses of 10, 20, .., 100 ms (tokens 1..10) and one
// error. Arm "base": 2 OK of 30 and 60 ms. No experiment: one describe.
void write_log(const fs::path& file) {
  LogWriter log(file);
  for (int i = 1; i <= 10; ++i) {
    log.response(fmt::format("t{}", i), "qa", "tuned-vs-base", "tuned", 10.0 * i, i);
  }
  log.response("t-err", "qa", "tuned-vs-base", "tuned", 9000, 0, 4);
  log.response("b1", "qa", "tuned-vs-base", "base", 30, 8);
  log.response("b2", "describe", "tuned-vs-base", "base", 60, 12);
  log.response("d1", "describe", "", "", 6, 3);
  log.rating("t1", 1, 1);
  log.rating("t2", 1, 1);
  log.rating("t3", -1, 1);
  log.rating("t3", 1, 2);  // the latest counts: up
  log.rating("b1", -1, 1);
}

// The whitespace-separated fields of the table line starting with `prefix`.
std::vector<std::string> fields_of(const std::string& output, const std::string& prefix) {
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream words(line);
    std::vector<std::string> out;
    for (std::string w; words >> w;) out.push_back(w);
    return out;
  }
  return {};
}

TEST(AbReportCli, PrintsCountsAndPercentilesPerArm) {
  TempDir dir;
  write_log(dir / "log.sqlite");
  const CliRun r = run_vitrine("ab-report --log " + (dir / "log.sqlite").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::string> header = fields_of(r.output, "experiment");
  ASSERT_EQ(header,
            std::vector<std::string>({"experiment", "arm", "requests", "errors", "up", "down",
                                      "rating", "total_p50", "total_p90", "total_p99", "ttft_p50",
                                      "ttft_p90", "ttft_p99", "tokens_mean", "tokens_p50"}))
      << r.output;
  // experiment arm requests errors up down rating total(p50 p90 p99) ttft(..) tokens(mean p50)
  EXPECT_EQ(fields_of(r.output, "tuned-vs-base  tuned"),
            std::vector<std::string>({"tuned-vs-base", "tuned", "11", "1", "3", "0", "+1.00",
                                      "50.0", "90.0", "100.0", "12.5", "22.5", "25.0", "5.5", "5"}))
      << r.output;
  EXPECT_EQ(fields_of(r.output, "tuned-vs-base  base"),
            std::vector<std::string>({"tuned-vs-base", "base", "2", "0", "0", "1", "-1.00", "30.0",
                                      "60.0", "60.0", "7.5", "15.0", "15.0", "10.0", "8"}))
      << r.output;
  EXPECT_EQ(fields_of(r.output, "(none)"),
            std::vector<std::string>({"(none)", "describe", "1", "0", "0", "0", "-", "6.0", "6.0",
                                      "6.0", "1.5", "1.5", "1.5", "3.0", "3"}))
      << r.output;
}

TEST(AbReportCli, JsonCarriesTheSameNumbers) {
  TempDir dir;
  write_log(dir / "log.sqlite");
  const CliRun r = run_vitrine("ab-report --json --log " + (dir / "log.sqlite").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json json = nlohmann::json::parse(r.output);
  EXPECT_EQ(json["percentiles"], "nearest-rank");
  ASSERT_EQ(json["rows"].size(), 3u) << r.output;
  const nlohmann::json& tuned = json["rows"][2];
  EXPECT_EQ(tuned["arm"], "tuned");
  EXPECT_EQ(tuned["requests"], 11);
  EXPECT_EQ(tuned["errors"], 1);
  EXPECT_EQ(tuned["ratings_up"], 3);
  EXPECT_EQ(tuned["total_ms"]["p50"], 50.0);
  EXPECT_EQ(tuned["total_ms"]["p99"], 100.0);
  EXPECT_EQ(tuned["first_token_ms"]["p90"], 22.5);
  EXPECT_EQ(tuned["completion_tokens_mean"], 5.5);
  EXPECT_EQ(json["rows"][0]["experiment"], "");
  EXPECT_EQ(json["rows"][0]["arm"], "describe");
  EXPECT_EQ(json["rows"][0]["mean_rating"], nullptr);
}

TEST(AbReportCli, ErrorsExitOneNamingTheFile) {
  TempDir dir;
  CliRun r = run_vitrine("ab-report --log " + (dir / "missing.sqlite").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("vitrine ab-report: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("missing.sqlite"), std::string::npos) << r.output;

  testing::write_file(dir / "notes.txt", std::string(2048, 'n'));
  r = run_vitrine("ab-report --log " + (dir / "notes.txt").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output.rfind("vitrine ab-report: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("notes.txt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not a vitrine response log"), std::string::npos) << r.output;

  r = run_vitrine("ab-report");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--log"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace vitrine
