// The SQLite helper: every type binds and reads back, statements are reused
// after a reset, transactions roll back unless committed, and every error
// begins with the caller's context and names the SQL or the operation.
#include "common/sqlite.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

using testing::expect_error;
using testing::TempDir;

constexpr int kCreate = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

// A database at dir/name with a table t(id INTEGER PRIMARY KEY, s TEXT, b BLOB, i INTEGER, r REAL).
void open_with_table(sql::Database& db, const TempDir& dir, const std::string& name = "t.sqlite") {
  db.open((dir / name).string(), kCreate, "test db '" + name + "'");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, b BLOB, i INTEGER, r REAL)");
}

int64_t count_rows(const sql::Database& db) {
  sql::Statement count(db, "SELECT count(*) FROM t");
  EXPECT_TRUE(count.step());
  return count.integer(0);
}

TEST(Sqlite, EveryTypeBindsAndReadsBack) {
  TempDir dir;
  sql::Database db;
  open_with_table(db, dir);
  const std::string text("caf\xc3\xa9 \"quoted\"");
  const std::string bytes("\x00\x01\xff\x00z", 5);
  {
    sql::Statement insert(db, "INSERT INTO t (id, s, b, i, r) VALUES (?1, ?2, ?3, ?4, ?5)");
    insert.bind_int64(1, 1);
    std::string scratch = text;
    insert.bind_text(2, scratch);
    scratch.assign(scratch.size(), '#');  // bind_text copied: the row keeps the old value
    insert.bind_blob(3, bytes);
    insert.bind_int64(4, INT64_MIN);
    insert.bind_double(5, -0.125);
    EXPECT_FALSE(insert.step());
    insert.reset();
    const std::string borrowed = "borrowed text";
    insert.bind_int64(1, 2);
    insert.bind_text_borrowed(2, borrowed);
    insert.bind_null(3);
    insert.bind_int64(4, INT64_MAX);
    // 5 left unbound: NULL after reset() cleared the bindings
    EXPECT_FALSE(insert.step());
  }
  sql::Statement select(db, "SELECT s, b, i, r FROM t ORDER BY id");
  ASSERT_TRUE(select.step());
  EXPECT_EQ(select.text(0), text);
  EXPECT_EQ(select.blob(1), bytes);
  EXPECT_EQ(select.integer(2), INT64_MIN);
  EXPECT_EQ(select.real(3), -0.125);
  EXPECT_FALSE(select.is_null(0));
  ASSERT_TRUE(select.step());
  EXPECT_EQ(select.text(0), "borrowed text");
  EXPECT_TRUE(select.is_null(1));
  EXPECT_EQ(select.blob(1), "");
  EXPECT_EQ(select.text(1), "");
  EXPECT_EQ(select.integer(2), INT64_MAX);
  EXPECT_TRUE(select.is_null(3));
  EXPECT_FALSE(select.step());
}

TEST(Sqlite, StatementsRunAgainAfterAReset) {
  TempDir dir;
  sql::Database db;
  open_with_table(db, dir);
  sql::Statement insert(db, "INSERT INTO t (id, s) VALUES (?1, ?2)", sql::Prepare::kPersistent);
  for (int64_t id = 1; id <= 3; ++id) {
    const sql::ResetGuard guard(insert);
    insert.bind_int64(1, id);
    insert.bind_text(2, "row " + std::to_string(id));
    EXPECT_FALSE(insert.step());
  }
  EXPECT_EQ(count_rows(db), 3);

  sql::Statement select(db, "SELECT s FROM t WHERE id >= ?1 ORDER BY id",
                        sql::Prepare::kPersistent);
  {
    const sql::ResetGuard guard(select);
    select.bind_int64(1, 2);
    ASSERT_TRUE(select.step());
    EXPECT_EQ(select.text(0), "row 2");
  }  // left mid-result: the guard resets, so the next run starts over
  select.bind_int64(1, 1);
  ASSERT_TRUE(select.step());
  EXPECT_EQ(select.text(0), "row 1");
  select.reset();
  EXPECT_FALSE(select.step()) << "reset() clears the bindings: id >= NULL matches nothing";

  sql::Statement moved = std::move(select);
  EXPECT_EQ(moved.sql(), "SELECT s FROM t WHERE id >= ?1 ORDER BY id");
  EXPECT_EQ(select.handle(), nullptr);  // NOLINT(bugprone-use-after-move): moved from is empty
  moved.reset();
  moved.bind_int64(1, 3);
  ASSERT_TRUE(moved.step());
  EXPECT_EQ(moved.text(0), "row 3");
}

TEST(Sqlite, ErrorsNameTheContextAndTheSql) {
  TempDir dir;
  sql::Database db;
  open_with_table(db, dir);
  expect_error([&] { sql::Statement bad(db, "SELEKT 1"); },
               {"test db 't.sqlite': preparing 'SELEKT 1': ", "syntax error"});
  expect_error([&] { db.exec("DROP TABLE nowhere"); },
               {"test db 't.sqlite': DROP TABLE nowhere: no such table: nowhere"});
  expect_error([&] { db.exec("DROP TABLE nowhere", "tidying up"); },
               {"test db 't.sqlite': tidying up: no such table"});
  try {
    db.exec("DROP TABLE nowhere", "");
    ADD_FAILURE() << "no exception thrown";
  } catch (const sql::Error& error) {
    EXPECT_STREQ(error.what(), "test db 't.sqlite': no such table: nowhere");
    EXPECT_EQ(error.detail(), "no such table: nowhere");
    EXPECT_EQ(error.code(), SQLITE_ERROR);
  }

  sql::Statement insert(db, "INSERT INTO t (id) VALUES (?1)");
  insert.bind_int64(1, 7);
  EXPECT_FALSE(insert.step());
  insert.reset();
  insert.bind_int64(1, 7);
  try {
    insert.step();
    ADD_FAILURE() << "a duplicate key was accepted";
  } catch (const sql::Error& error) {
    EXPECT_EQ(std::string(error.what()),
              "test db 't.sqlite': INSERT INTO t (id) VALUES (?1): UNIQUE constraint failed: t.id");
    EXPECT_EQ(error.code(), SQLITE_CONSTRAINT_PRIMARYKEY);  // the extended code
    EXPECT_EQ(error.code() & 0xff, SQLITE_CONSTRAINT);
  }
  insert.reset();
  insert.bind_int64(1, 7);
  expect_error([&] { insert.step("adding row 7"); },
               {"test db 't.sqlite': adding row 7: UNIQUE constraint failed"});

  // The description is built only when the step fails.
  int described = 0;
  const auto describe = [&] {
    ++described;
    return std::string("adding row ") + std::to_string(described);
  };
  insert.reset();
  insert.bind_int64(1, 8);
  EXPECT_FALSE(insert.step(describe));
  EXPECT_EQ(described, 0);
  insert.reset();
  insert.bind_int64(1, 8);
  expect_error([&] { insert.step(describe); }, {"test db 't.sqlite': adding row 1: UNIQUE"});
  EXPECT_EQ(described, 1);
}

TEST(Sqlite, BadPathsAndOtherFilesAreNamed) {
  TempDir dir;
  sql::Database db;
  const std::string missing = (dir / "no-such-dir" / "x.sqlite").string();
  expect_error([&] { db.open(missing, kCreate, "store '" + missing + "'"); },
               {"store '" + missing + "': cannot open: unable to open database file"});
  EXPECT_FALSE(db.is_open());
  expect_error([&] { sql::Database other(missing, kCreate, "catalogue x", "cannot create"); },
               {"catalogue x: cannot create: "});

  // A read-only open does not create the file.
  expect_error([&] { db.open((dir / "absent.sqlite").string(), SQLITE_OPEN_READONLY, "log"); },
               {"log: cannot open:"});
  EXPECT_FALSE(std::filesystem::exists(dir / "absent.sqlite"));

  // SQLite opens any file lazily; the first statement finds it is no database.
  testing::write_file(dir / "notes.txt", std::string(4096, 'x'));
  db.open((dir / "notes.txt").string(), SQLITE_OPEN_READONLY, "notes");
  try {
    sql::Statement query(db, "SELECT count(*) FROM sqlite_master");
    query.step();
    ADD_FAILURE() << "a text file was read as a database";
  } catch (const sql::Error& error) {
    EXPECT_EQ(error.code() & 0xff, SQLITE_NOTADB) << error.what();
    EXPECT_NE(std::string(error.what()).find("notes: "), std::string::npos) << error.what();
  }
}

TEST(Sqlite, UrisOpenWithTheirParameters) {
  TempDir dir;
  {
    sql::Database db;
    open_with_table(db, dir, "uri.sqlite");
  }
  sql::Database db("file:" + (dir / "uri.sqlite").string() + "?mode=ro",
                   SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "read-only");
  EXPECT_EQ(count_rows(db), 0);
  expect_error([&] { db.exec("INSERT INTO t (id) VALUES (1)"); },
               {"read-only: INSERT INTO t (id) VALUES (1): attempt to write a readonly database"});
}

TEST(Sqlite, TransactionsRollBackUnlessCommitted) {
  TempDir dir;
  sql::Database db;
  open_with_table(db, dir);
  {
    sql::Transaction transaction(db);
    db.exec("INSERT INTO t (id) VALUES (1)");
  }
  EXPECT_EQ(count_rows(db), 0);
  try {
    sql::Transaction transaction(db, "BEGIN IMMEDIATE");
    db.exec("INSERT INTO t (id) VALUES (1)");
    db.exec("INSERT INTO t (id) VALUES (1)");  // throws: the first insert is rolled back too
    transaction.commit();
  } catch (const sql::Error&) {
  }
  EXPECT_EQ(count_rows(db), 0);
  {
    sql::Transaction transaction(db);
    db.exec("INSERT INTO t (id) VALUES (1)");
    transaction.commit();
  }
  EXPECT_EQ(count_rows(db), 1);
}

TEST(Sqlite, CloseRefusesWhileStatementsLive) {
  TempDir dir;
  sql::Database db;
  open_with_table(db, dir);
  db.busy_timeout(100);
  sql::Statement select(db, "SELECT id FROM t");
  expect_error([&] { db.close(); }, {"test db 't.sqlite': closing: "});
  EXPECT_TRUE(db.is_open());
  select.finalize();
  db.close();
  EXPECT_FALSE(db.is_open());
  open_with_table(db, dir, "again.sqlite");  // a closed Database opens again
  EXPECT_EQ(count_rows(db), 0);
}

}  // namespace
}  // namespace vitrine
