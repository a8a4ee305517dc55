// The daemon's response log: rows round-trip, feedback needs a logged
// response, files that are not logs (or are newer) are refused by name, and
// the A/B report counts and takes exact nearest-rank percentiles.
#include "router/response_log.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <sstream>
#include <thread>

#include "common/errors.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine::router {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::TempDir;

ResponseRecord response(const std::string& id, const std::string& experiment,
                        const std::string& arm, double total_ms, int status_code = 0) {
  ResponseRecord r;
  r.response_id = id;
  r.unix_ms = 1700000000000;
  r.user_id = "user-" + id;
  r.input = "What is in the box?";
  r.route = "qa";
  r.agent = "qa";
  r.adapter = "qa";
  r.adapter_version = 2;
  r.experiment = experiment;
  r.arm = arm;
  r.output = "A kettle.";
  r.prompt_tokens = 40;
  r.completion_tokens = 10;
  r.queue_ms = 1;
  r.first_token_ms = total_ms / 2;
  r.total_ms = total_ms;
  r.finish_reason = status_code == 0 ? "stop" : "error";
  r.status_code = status_code;
  r.error_message = status_code == 0 ? "" : "deadline exceeded";
  return r;
}

// Runs one statement on a database with the SQLite library itself.
void sql(const fs::path& file, const std::string& statement) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, statement.c_str(), nullptr, nullptr, &error), SQLITE_OK)
      << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

TEST(ResponseLog, RecordsRoundTripAcrossReopening) {
  TempDir dir;
  const fs::path file = dir / "responses.sqlite";
  ResponseRecord r = response("r1", "tuned-vs-base", "tuned", 123.5);
  r.input = "unicode ☕ and 'quotes'";
  r.completion_tokens = 17;
  r.queue_ms = 4.25;
  {
    ResponseLog log(file);
    log.record(r);
    ResponseRecord no_token = response("r2", "", "", 9, 4);
    no_token.first_token_ms = -1;
    log.record(no_token);
  }
  ResponseLog log(file);
  const auto back = log.find("r1");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->response_id, "r1");
  EXPECT_EQ(back->unix_ms, r.unix_ms);
  EXPECT_EQ(back->user_id, r.user_id);
  EXPECT_EQ(back->input, r.input);
  EXPECT_EQ(back->route, "qa");
  EXPECT_EQ(back->agent, "qa");
  EXPECT_EQ(back->adapter, "qa");
  EXPECT_EQ(back->adapter_version, 2);
  EXPECT_EQ(back->experiment, "tuned-vs-base");
  EXPECT_EQ(back->arm, "tuned");
  EXPECT_EQ(back->output, r.output);
  EXPECT_EQ(back->prompt_tokens, 40);
  EXPECT_EQ(back->completion_tokens, 17);
  EXPECT_DOUBLE_EQ(back->queue_ms, 4.25);
  EXPECT_DOUBLE_EQ(back->first_token_ms, 61.75);
  EXPECT_DOUBLE_EQ(back->total_ms, 123.5);
  EXPECT_EQ(back->finish_reason, "stop");
  EXPECT_EQ(back->status_code, 0);
  EXPECT_EQ(back->error_message, "");
  const auto failed = log.find("r2");
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->first_token_ms, -1) << "no token: stored as NULL, read back as -1";
  EXPECT_EQ(failed->status_code, 4);
  EXPECT_EQ(failed->error_message, "deadline exceeded");
  EXPECT_FALSE(log.find("r3").has_value());
}

TEST(ResponseLog, IsInWalMode) {
  TempDir dir;
  ResponseLog log(dir / "log.sqlite");
  log.record(response("r1", "", "", 1));
  EXPECT_TRUE(fs::exists(dir / "log.sqlite-wal"));
}

TEST(ResponseLog, RefusesDuplicateAndEmptyIds) {
  TempDir dir;
  ResponseLog log(dir / "log.sqlite");
  log.record(response("r1", "", "", 1));
  expect_error([&] { log.record(response("r1", "", "", 2)); }, {"'r1'", "already"});
  EXPECT_THROW(log.record(response("r1", "", "", 2)), std::invalid_argument);
  EXPECT_THROW(log.record(response("", "", "", 2)), std::invalid_argument);
  EXPECT_DOUBLE_EQ(log.find("r1")->total_ms, 1) << "the first row stays";
}

TEST(ResponseLog, FeedbackNeedsALoggedResponseAndARatingOfOne) {
  TempDir dir;
  ResponseLog log(dir / "log.sqlite");
  log.record(response("r1", "", "", 1));
  EXPECT_THROW(log.add_feedback({"nope", 1, "", 5}), NotFoundError);
  expect_error([&] { log.add_feedback({"nope", 1, "", 5}); }, {"'nope'"});
  EXPECT_THROW(log.add_feedback({"r1", 0, "", 5}), std::invalid_argument);
  expect_error([&] { log.add_feedback({"r1", 2, "", 5}); }, {"-1 or 1", "got 2"});
  log.add_feedback({"r1", -1, "wrong product", 10});
  log.add_feedback({"r1", 1, "on second thought, fine", 20});
  const std::vector<Feedback> all = log.feedback("r1");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].rating, -1);
  EXPECT_EQ(all[0].comment, "wrong product");
  EXPECT_EQ(all[0].unix_ms, 10);
  EXPECT_EQ(all[1].rating, 1);
  EXPECT_TRUE(log.feedback("nope").empty());
}

TEST(ResponseLog, AFeedbackCommentOverTheLimitIsRefusedNotStored) {
  TempDir dir;
  ResponseLog log(dir / "log.sqlite");
  log.record(response("r1", "", "", 1));
  expect_error(
      [&] {
        log.add_feedback({"r1", 1, std::string(1 << 20, 'x'), 5});
      },
      {"comment of 1048576 bytes", "limit of 4096"});
  log.add_feedback({"r1", 1, std::string(kMaxCommentBytes, 'y'), 6});
  ASSERT_EQ(log.feedback("r1").size(), 1u);
  EXPECT_EQ(log.feedback("r1")[0].unix_ms, 6);
}

TEST(ResponseLog, RefusesFilesThatAreNotResponseLogs) {
  TempDir dir;
  testing::write_file(dir / "notes.txt", std::string(4096, 'x'));
  expect_error([&] { ResponseLog log(dir / "notes.txt"); },
               {"notes.txt", "not a vitrine response log"});
  expect_error([&] { ab_report(dir / "notes.txt"); }, {"notes.txt", "not a vitrine response log"});

  sql(dir / "other.sqlite", "CREATE TABLE t (x INTEGER)");
  expect_error([&] { ResponseLog log(dir / "other.sqlite"); },
               {"other.sqlite", "not a vitrine response log"});
  expect_error([&] { ab_report(dir / "other.sqlite"); }, {"other.sqlite", "not a vitrine"});
  EXPECT_FALSE(fs::exists(dir / "other.sqlite-wal")) << "someone else's file was changed";

  testing::write_file(dir / "empty.sqlite", "");
  expect_error([&] { ab_report(dir / "empty.sqlite"); }, {"empty.sqlite", "not a vitrine"});

  expect_error([&] { ab_report(dir / "missing.sqlite"); }, {"missing.sqlite", "does not exist"});
  EXPECT_FALSE(fs::exists(dir / "missing.sqlite")) << "the report must not create a log";
}

TEST(ResponseLog, RefusesANewerSchemaNamingTheFile) {
  TempDir dir;
  { ResponseLog log(dir / "log.sqlite"); }
  sql(dir / "log.sqlite", "PRAGMA user_version = " + std::to_string(kResponseLogSchemaVersion + 1));
  expect_error([&] { ResponseLog log(dir / "log.sqlite"); },
               {"log.sqlite", "schema version 2", "upgrade vitrine"});
  expect_error([&] { ab_report(dir / "log.sqlite"); }, {"log.sqlite", "schema version 2"});
}

TEST(ResponseLog, ConcurrentWritersLoseNothing) {
  TempDir dir;
  ResponseLog log(dir / "log.sqlite");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string id = std::to_string(t) + "-" + std::to_string(i);
        log.record(response(id, "", "", i));
        log.add_feedback({id, i % 2 == 0 ? 1 : -1, "", i});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const auto rows = ab_report(dir / "log.sqlite");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].requests, 200);
  EXPECT_EQ(rows[0].ratings_up, 100);
  EXPECT_EQ(rows[0].ratings_down, 100);
}

// tuned: 100 OK responses of 1..100 ms. base: 10 OK of 10, 20, .., 100 ms and
// 2 errors of 5000 ms (left out of the latencies). No experiment: 3 on qa and
// 1 on describe.
void write_known_log(const fs::path& file) {
  ResponseLog log(file);
  for (int i = 1; i <= 100; ++i) {
    ResponseRecord r = response(fmt::format("t{}", i), "tuned-vs-base", "tuned", i);
    r.completion_tokens = i;
    log.record(r);
  }
  for (int i = 1; i <= 10; ++i) {
    ResponseRecord r = response(fmt::format("b{}", i), "tuned-vs-base", "base", 10.0 * i);
    r.completion_tokens = i % 2 == 0 ? 20 : 10;
    if (i > 5) r.first_token_ms = -1;  // five produced no first-token time
    log.record(r);
  }
  log.record(response("e1", "tuned-vs-base", "base", 5000, 4));
  log.record(response("e2", "tuned-vs-base", "base", 5000, 14));
  for (int i = 1; i <= 3; ++i) log.record(response(fmt::format("q{}", i), "", "", 7.0 * i));
  ResponseRecord d = response("d1", "", "", 42);
  d.route = "describe";
  log.record(d);
  // Ratings: the latest per response counts.
  log.add_feedback({"t1", 1, "", 1});
  log.add_feedback({"t2", 1, "", 1});
  log.add_feedback({"t3", -1, "", 1});
  log.add_feedback({"t3", 1, "changed my mind", 2});  // t3 counts as up
  log.add_feedback({"t4", 1, "", 5});
  log.add_feedback({"t4", -1, "", 3});  // older: t4 stays up
  log.add_feedback({"b1", -1, "", 1});
  log.add_feedback({"e1", -1, "", 1});  // errors can be rated too
}

TEST(AbReport, CountsAndNearestRankPercentilesPerArm) {
  TempDir dir;
  write_known_log(dir / "log.sqlite");
  const std::vector<AbReportRow> rows = ab_report(dir / "log.sqlite");
  ASSERT_EQ(rows.size(), 4u);
  // Sorted: no experiment ("") first, by route; then the experiment's arms.
  EXPECT_EQ(rows[0].experiment, "");
  EXPECT_EQ(rows[0].arm, "describe");
  EXPECT_EQ(rows[1].arm, "qa");
  EXPECT_EQ(rows[2].arm, "base");
  EXPECT_EQ(rows[3].arm, "tuned");

  const AbReportRow& tuned = rows[3];
  EXPECT_EQ(tuned.experiment, "tuned-vs-base");
  EXPECT_EQ(tuned.requests, 100);
  EXPECT_EQ(tuned.errors, 0);
  EXPECT_EQ(tuned.ratings_up, 4);
  EXPECT_EQ(tuned.ratings_down, 0);
  EXPECT_DOUBLE_EQ(*tuned.mean_rating, 1.0);
  ASSERT_TRUE(tuned.total_ms.has_value());
  EXPECT_DOUBLE_EQ(tuned.total_ms->p50, 50);
  EXPECT_DOUBLE_EQ(tuned.total_ms->p90, 90);
  EXPECT_DOUBLE_EQ(tuned.total_ms->p99, 99);
  EXPECT_DOUBLE_EQ(tuned.first_token_ms->p50, 25);
  EXPECT_DOUBLE_EQ(tuned.first_token_ms->p99, 49.5);
  EXPECT_DOUBLE_EQ(*tuned.completion_tokens_mean, 50.5);
  EXPECT_DOUBLE_EQ(*tuned.completion_tokens_p50, 50);

  const AbReportRow& base = rows[2];
  EXPECT_EQ(base.requests, 12);
  EXPECT_EQ(base.errors, 2);
  EXPECT_EQ(base.ratings_up, 0);
  EXPECT_EQ(base.ratings_down, 2);
  EXPECT_DOUBLE_EQ(*base.mean_rating, -1.0);
  EXPECT_DOUBLE_EQ(base.total_ms->p50, 50);   // rank 5 of 10
  EXPECT_DOUBLE_EQ(base.total_ms->p90, 90);   // rank 9
  EXPECT_DOUBLE_EQ(base.total_ms->p99, 100);  // rank 10: the errors' 5000 are left out
  // First-token times of the five that had one: 5, 10, 15, 20, 25.
  EXPECT_DOUBLE_EQ(base.first_token_ms->p50, 15);
  EXPECT_DOUBLE_EQ(base.first_token_ms->p90, 25);
  EXPECT_DOUBLE_EQ(*base.completion_tokens_mean, 15);
  EXPECT_DOUBLE_EQ(*base.completion_tokens_p50, 10);

  const AbReportRow& qa = rows[1];
  EXPECT_EQ(qa.requests, 3);
  EXPECT_FALSE(qa.mean_rating.has_value());
  EXPECT_DOUBLE_EQ(qa.total_ms->p50, 14);
  EXPECT_DOUBLE_EQ(qa.total_ms->p99, 21);
}

TEST(AbReport, AllErrorsLeaveLatenciesAbsent) {
  TempDir dir;
  {
    ResponseLog log(dir / "log.sqlite");
    log.record(response("x", "e", "a", 3, 13));
  }
  const auto rows = ab_report(dir / "log.sqlite");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].errors, 1);
  EXPECT_FALSE(rows[0].total_ms.has_value());
  EXPECT_FALSE(rows[0].completion_tokens_mean.has_value());
  EXPECT_EQ(ab_report_json(rows)["rows"][0]["total_ms"], nullptr);
  EXPECT_NE(format_ab_report(rows).find(" - "), std::string::npos);
}

TEST(AbReport, ReadsWhileTheDaemonWrites) {
  TempDir dir;
  ResponseLog log(dir / "log.sqlite");
  log.record(response("r1", "", "", 1));
  EXPECT_EQ(ab_report(dir / "log.sqlite").at(0).requests, 1);
  log.record(response("r2", "", "", 2));
  EXPECT_EQ(ab_report(dir / "log.sqlite").at(0).requests, 2);
}

TEST(AbReport, TableIsFixedWidthAndJsonHasEveryField) {
  TempDir dir;
  write_known_log(dir / "log.sqlite");
  const auto rows = ab_report(dir / "log.sqlite");
  const std::string table = format_ab_report(rows);
  std::istringstream in(table);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 6u) << table;  // header, 4 rows, footnote
  for (size_t i = 1; i < 5; ++i) EXPECT_EQ(lines[i].size(), lines[0].size()) << table;
  // Each value sits under the right edge of its (right-aligned) column.
  const size_t p99_end = lines[0].find("total_p99") + std::string("total_p99").size();
  EXPECT_EQ(lines[4].substr(p99_end - 4, 4), "99.0") << table;
  EXPECT_EQ(lines[3].substr(p99_end - 5, 5), "100.0") << table;
  EXPECT_EQ(lines[1].rfind("(none)", 0), 0u) << table;
  EXPECT_NE(lines[4].find("+1.00"), std::string::npos) << table;

  const nlohmann::json json = ab_report_json(rows);
  EXPECT_EQ(json["percentiles"], "nearest-rank");
  ASSERT_EQ(json["rows"].size(), 4u);
  const nlohmann::json& tuned = json["rows"][3];
  EXPECT_EQ(tuned["experiment"], "tuned-vs-base");
  EXPECT_EQ(tuned["arm"], "tuned");
  EXPECT_EQ(tuned["requests"], 100);
  EXPECT_EQ(tuned["errors"], 0);
  EXPECT_EQ(tuned["ratings_up"], 4);
  EXPECT_EQ(tuned["ratings_down"], 0);
  EXPECT_EQ(tuned["mean_rating"], 1.0);
  EXPECT_EQ(tuned["total_ms"]["p90"], 90.0);
  EXPECT_EQ(tuned["first_token_ms"]["p50"], 25.0);
  EXPECT_EQ(tuned["completion_tokens_mean"], 50.5);
  EXPECT_EQ(tuned["completion_tokens_p50"], 50.0);
  EXPECT_EQ(json["rows"][0]["mean_rating"], nullptr);
}

TEST(AbReport, EmptyLogGivesNoRows) {
  TempDir dir;
  { ResponseLog log(dir / "log.sqlite"); }
  EXPECT_TRUE(ab_report(dir / "log.sqlite").empty());
  EXPECT_NE(format_ab_report({}).find("no responses"), std::string::npos);
}

}  // namespace
}  // namespace vitrine::router
