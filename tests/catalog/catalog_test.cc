// catalog.sqlite: round trips, determinism, error messages and title search
// from noisy wordings, on hand-made products and on the real sample.
#include "catalog/catalog.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace vitrine::catalog {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its content.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ =
        fs::temp_directory_path() / ("vitrine_catalog_" + std::string(info->name()) + "_" +
                                     std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// A product with owning strings; product() views them.
struct Record {
  std::string uid, title, content, lang = "en";
  Split split = Split::kTrain;
  uint64_t line = 0;
  Product product() const { return Product{uid, title, content, split, lang, line}; }
};

void write_catalog(const fs::path& path, const std::vector<Record>& records,
                   CatalogOptions options = {}) {
  CatalogWriter writer(path, options);
  writer.set_meta("dataset", "unit-test");
  for (const Record& record : records) writer.add(record.product());
  writer.set_meta("seed", "7");
  writer.finish();
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The raw sample's commonest HTML entities decoded, others made a space: a
// stand-in for prepare's cleaner, so that titles read as users would type them.
std::string decode_entities(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t end = text[i] == '&' ? text.find(';', i) : std::string::npos;
    if (end == std::string::npos || end - i > 10) {
      out += text[i];
      continue;
    }
    const std::string entity = text.substr(i, end - i + 1);
    if (entity == "&amp;")
      out += '&';
    else if (entity == "&quot;")
      out += '"';
    else if (entity == "&#x2019;" || entity == "&#8217;" || entity == "&#39;")
      out += '\'';
    else
      out += ' ';
    i = end;
  }
  return out;
}

// The real sample, uid "line-N" where the record has none. Empty if absent.
std::vector<Record> load_sample() {
  std::vector<Record> records;
  std::ifstream in(VITRINE_SHARED_DIR "/data/amazon_titles_sample.jsonl");
  std::string line;
  for (uint64_t n = 1; std::getline(in, line); ++n) {
    const auto json = nlohmann::json::parse(line);
    Record record;
    record.uid =
        json.contains("uid") ? json["uid"].get<std::string>() : "line-" + std::to_string(n);
    record.title = decode_entities(json["title"].get<std::string>());
    record.content = decode_entities(json["content"].get<std::string>());
    record.split = static_cast<Split>(n % kNumSplits);
    record.line = n;
    records.push_back(std::move(record));
  }
  return records;
}

#define SKIP_WITHOUT_SAMPLE(records)                  \
  if ((records).empty())                              \
  GTEST_SKIP() << "no sample at " VITRINE_SHARED_DIR  \
                  "/data/amazon_titles_sample.jsonl " \
                  "(set -DVITRINE_SHARED_DIR)"

std::vector<Record> hand_made() {
  return {
      {"0000913154", "The Way Things Work: An Illustrated Encyclopedia of Technology", "Machines."},
      {"0399144463",
       "Who Moved My Cheese? An Amazing Way to Deal with Change in Your Work and in Your Life",
       "A parable about change, mice and little people in a maze."},
      {"0439136350", "Harry Potter and the Prisoner of Azkaban", "Third year at Hogwarts."},
      {"0439136369", "Harry Potter and the Prisoner of Azkaban (Book 3) Illustrated Edition",
       "Art."},
      {"0439064872", "Harry Potter and the Chamber of Secrets", "Second year at Hogwarts."},
      {"B000CHEESE", "Cheese: A Guide to the World's Best", "Cheddar, brie and others."},
      {"B000WORKS1", "How Things Work", "An introduction to physics."},
      {"0000000001", "What Is the What", "A novel by Dave Eggers."},
      {"B00PAODEAC",
       "P\xC3\xA3o de A\xC3\xA7\xC3\xBA"
       "car: Guia do Rio de Janeiro",
       "Cart\xC3\xB5"
       "es postais."},
      {"B0000EMPTY", "Plain Title With Empty Content", ""},
  };
}

std::vector<std::string> titles_of(const std::vector<CatalogMatch>& matches) {
  std::vector<std::string> titles;
  for (const auto& match : matches) titles.push_back(match.title);
  return titles;
}

TEST(Catalog, RoundTripGetSizeAndMeta) {
  TempDir dir;
  auto records = hand_made();
  records[2].split = Split::kTest;
  records[2].lang = "pt";
  records[2].line = 42;
  write_catalog(dir / "catalog.sqlite", records);
  const Catalog catalog(dir / "catalog.sqlite");
  EXPECT_EQ(catalog.size(), static_cast<int64_t>(records.size()));
  for (const Record& record : records) {
    const auto stored = catalog.get(record.uid);
    ASSERT_TRUE(stored.has_value()) << record.uid;
    EXPECT_EQ(stored->uid, record.uid);
    EXPECT_EQ(stored->title, record.title);
    EXPECT_EQ(stored->content, record.content);
    EXPECT_EQ(stored->split, split_name(record.split));
    EXPECT_EQ(stored->lang, record.lang);
    EXPECT_EQ(stored->line, record.line);
  }
  EXPECT_FALSE(catalog.get("no-such-uid").has_value());
  EXPECT_FALSE(catalog.get("").has_value());
  EXPECT_EQ(catalog.meta("dataset"), "unit-test");
  EXPECT_EQ(catalog.meta("seed"), "7");
  EXPECT_THROW(catalog.meta("absent"), std::out_of_range);
  EXPECT_EQ(catalog.meta("catalog.index_content"), "0");
}

TEST(Catalog, MetaKeysAreReplacedAndReservedKeysRefused) {
  TempDir dir;
  CatalogWriter writer(dir / "catalog.sqlite", {});
  writer.set_meta("version", "1");
  writer.set_meta("version", "2");
  EXPECT_THROW(writer.set_meta("catalog.products", "9"), std::invalid_argument);
  writer.add(hand_made()[0].product());
  EXPECT_EQ(writer.size(), 1);
  writer.finish();
  EXPECT_EQ(Catalog(dir / "catalog.sqlite").meta("version"), "2");
}

TEST(Catalog, SameCallsGiveByteIdenticalFiles) {
  TempDir dir;
  auto records = load_sample();
  if (records.empty()) records = hand_made();
  for (const bool index_content : {false, true}) {
    CatalogOptions options;
    options.index_content = index_content;
    const std::string suffix = index_content ? "_content" : "";
    write_catalog(dir / ("a" + suffix + ".sqlite"), records, options);
    write_catalog(dir / ("b" + suffix + ".sqlite"), records, options);
    const std::string a = read_bytes(dir / ("a" + suffix + ".sqlite"));
    EXPECT_GT(a.size(), 0u);
    EXPECT_TRUE(a == read_bytes(dir / ("b" + suffix + ".sqlite")))
        << "index_content " << index_content;
  }
}

TEST(Catalog, DuplicateUidThrowsNamingIt) {
  TempDir dir;
  CatalogWriter writer(dir / "catalog.sqlite", {});
  Record record = hand_made()[0];
  writer.add(record.product());
  record.line = 77;
  try {
    writer.add(record.product());
    FAIL() << "a duplicate uid was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("'0000913154'"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("77"), std::string::npos) << error.what();
  }
}

TEST(Catalog, WriterRefusesAnExistingFile) {
  TempDir dir;
  std::ofstream(dir / "catalog.sqlite") << "keep me";
  EXPECT_THROW(CatalogWriter(dir / "catalog.sqlite", {}), std::runtime_error);
  EXPECT_EQ(read_bytes(dir / "catalog.sqlite"), "keep me");
}

std::string open_error(const fs::path& path) {
  try {
    Catalog catalog(path);
  } catch (const std::runtime_error& error) {
    return error.what();
  }
  return "";
}

TEST(Catalog, OpeningSomethingElseGivesAClearError) {
  TempDir dir;
  EXPECT_NE(open_error(dir / "missing.sqlite").find("no such file"), std::string::npos);

  std::ofstream(dir / "text.sqlite") << std::string(8192, 'x');
  EXPECT_NE(open_error(dir / "text.sqlite").find("not a vitrine catalogue"), std::string::npos)
      << open_error(dir / "text.sqlite");

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "other.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_NE(open_error(dir / "other.sqlite").find("not a vitrine catalogue"), std::string::npos)
      << open_error(dir / "other.sqlite");

  {
    CatalogWriter unfinished(dir / "unfinished.sqlite", {});
    unfinished.add(hand_made()[0].product());
  }
  EXPECT_TRUE(fs::exists(dir / "unfinished.sqlite"));
  const std::string error = open_error(dir / "unfinished.sqlite");
  EXPECT_NE(error.find("unfinished.sqlite"), std::string::npos) << error;
  EXPECT_NE(error.find("incomplete"), std::string::npos) << error;
}

TEST(Catalog, FindsHandMadeTitlesFromNoisyWordings) {
  TempDir dir;
  write_catalog(dir / "catalog.sqlite", hand_made());
  const Catalog catalog(dir / "catalog.sqlite");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"tell me about the way things work", "0000913154"},
      {"who moved my cheese", "0399144463"},
      {"Who Moved My Cheese?", "0399144463"},
      {"harry potter prisoner azkaban", "0439136350"},
      {"harry potter and the chamber of secrets", "0439064872"},
      {"o que é harry potter e a câmara secreta chamber secrets?", "0439064872"},
      {"how things work", "B000WORKS1"},
      {"tell me about the book how things work please", "B000WORKS1"},
      {"what is the what", "0000000001"},
      {"pao de acucar guia", "B00PAODEAC"},
      {"fale sobre P\xC3\x83O DE A\xC3\x87\xC3\x9A"
       "CAR",
       "B00PAODEAC"},
  };
  for (const auto& [wording, uid] : cases) {
    const auto matches = catalog.find_by_title(wording);
    ASSERT_FALSE(matches.empty()) << wording;
    EXPECT_EQ(matches[0].uid, uid) << wording << " -> " << matches[0].title;
    EXPECT_GT(matches[0].score, 0.0);
    EXPECT_LE(matches[0].score, 1.0);
    for (size_t i = 1; i < matches.size(); ++i) EXPECT_LE(matches[i].score, matches[i - 1].score);
  }
  // A wording that is exactly a title gives that title alone, scored 1.
  const auto exact = catalog.find_by_title("Harry Potter and the Prisoner of Azkaban");
  ASSERT_EQ(exact.size(), 1u);
  EXPECT_EQ(exact[0].uid, "0439136350");
  EXPECT_DOUBLE_EQ(exact[0].score, 1.0);
  const auto both = catalog.find_by_title("harry potter prisoner of azkaban book");
  ASSERT_GE(both.size(), 2u);
  EXPECT_EQ(both[0].uid, "0439136369");
  EXPECT_EQ(both[1].uid, "0439136350");
  EXPECT_LT(both[0].score, 1.0);
  EXPECT_EQ(catalog.find_by_title("harry potter", 1).size(), 1u);
}

TEST(Catalog, FindsExactTitlesUpToCaseSpacesAndTrailingQuestionMarks) {
  TempDir dir;
  write_catalog(dir / "catalog.sqlite", hand_made());
  const Catalog catalog(dir / "catalog.sqlite");
  for (const std::string text :
       {"Who Moved My Cheese? An Amazing Way to Deal with Change in Your Work and in Your Life",
        "who moved my cheese? an amazing way to deal with change in your work and in your life??",
        "  Who Moved  My Cheese?\tAn Amazing Way to Deal with Change in Your Work and in Your "
        "Life ?"}) {
    const auto matches = catalog.find_exact_title(text);
    ASSERT_EQ(matches.size(), 1u) << text;
    EXPECT_EQ(matches[0].uid, "0399144463");
    EXPECT_DOUBLE_EQ(matches[0].score, 1.0);
  }
  EXPECT_EQ(catalog.find_exact_title("what is the what?").at(0).uid, "0000000001");
  EXPECT_EQ(catalog.find_exact_title("How things work").at(0).uid, "B000WORKS1");
  // Same identifying words, other words or punctuation: not the title.
  for (const std::string text :
       {"how do things work", "How Things Work!", "harry potter prisoner azkaban",
        "Who Moved My Cheese", "the what", "", "?", "   ", "\"*"}) {
    EXPECT_TRUE(catalog.find_exact_title(text).empty()) << text;
  }
  EXPECT_TRUE(catalog.find_exact_title("How Things Work", 0).empty());
}

// Calls from many threads at once, each on a connection of its own (or
// waiting for one), answer exactly as calls made one at a time.
TEST(Catalog, ThreadsGetTheAnswersOfOneThread) {
  TempDir dir;
  write_catalog(dir / "catalog.sqlite", hand_made());
  const std::vector<std::string> wordings = {"who moved my cheese",
                                             "harry potter azkaban",
                                             "how things work?",
                                             "what is the what",
                                             "tell me about the prisoner of azkaban",
                                             "nothing like any title"};
  for (const int connections : {1, 3, Catalog::kDefaultConnections}) {
    const Catalog catalog(dir / "catalog.sqlite", connections);
    std::vector<std::string> expected;
    const auto answer = [&](const std::string& w) {
      std::string out;
      for (const auto& m : catalog.find_by_title(w)) out += m.uid + " ";
      const auto t = catalog.find_title_in_text(w);
      out += t ? t->uid + std::to_string(t->words_before) : "-";
      out += catalog.find_exact_title(w).empty() ? "" : " exact";
      out += catalog.get("0439136350")->title;
      return out;
    };
    for (const std::string& w : wordings) expected.push_back(answer(w));
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 60; ++i) {
          const size_t k = static_cast<size_t>(t + i) % wordings.size();
          wrong += answer(wordings[k]) != expected[k];
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(wrong.load(), 0) << connections << " connections";
  }
  EXPECT_THROW(Catalog(dir / "catalog.sqlite", 0), std::invalid_argument);
}

TEST(Catalog, MeaninglessOrHostileWordingNeverThrows) {
  TempDir dir;
  write_catalog(dir / "catalog.sqlite", hand_made());
  const Catalog catalog(dir / "catalog.sqlite");
  for (const char* wording : {"", "   ", "?!.,;", "zzzz qqqq", "\xFF\xFE\xC3"}) {
    EXPECT_TRUE(catalog.find_by_title(wording).empty()) << wording;
  }
  const std::vector<std::string> hostile = {"\"",
                                            "\"\"\"",
                                            "harry\" OR \"potter",
                                            "(harry",
                                            "potter)",
                                            "harry* potter*",
                                            "title:harry",
                                            "{title}: harry",
                                            "-harry",
                                            "harry - potter",
                                            "harry AND",
                                            "AND OR NOT",
                                            "NEAR(harry potter, 2)",
                                            "harry NEAR potter",
                                            "^harry",
                                            "+ + +",
                                            std::string("harry\0potter", 12),
                                            "col:",
                                            "* * *",
                                            "\\\" ' ` ;",
                                            std::string(100000, 'a'),
                                            std::string(20000, '('),
                                            "harry \xE2\x80\x9Cpotter\xE2\x80\x9D"};
  for (const std::string& wording : hostile) {
    std::vector<CatalogMatch> matches;
    EXPECT_NO_THROW(matches = catalog.find_by_title(wording)) << wording.substr(0, 40);
  }
  EXPECT_EQ(catalog.find_by_title("harry\" OR \"potter AND (azkaban*")[0].uid, "0439136350");
  std::string many;
  for (int i = 0; i < 500; ++i) many += "harry potter azkaban word" + std::to_string(i) + " ";
  EXPECT_NO_THROW(catalog.find_by_title(many));
  EXPECT_TRUE(catalog.find_by_title("harry potter", 0).empty());
}

TEST(Catalog, IndexContentAddsADescriptionIndexOnly) {
  TempDir dir;
  CatalogOptions options;
  options.index_content = true;
  write_catalog(dir / "with.sqlite", hand_made(), options);
  write_catalog(dir / "without.sqlite", hand_made());
  {
    const Catalog with(dir / "with.sqlite");
    EXPECT_EQ(with.meta("catalog.index_content"), "1");
    EXPECT_EQ(with.meta("catalog.products"), "10");
    // Titles are still searched on titles only.
    EXPECT_EQ(with.find_by_title("harry potter prisoner azkaban")[0].uid, "0439136350");
    EXPECT_TRUE(with.find_by_title("mice maze").empty());
  }
  // The description index answers FTS5 queries in SQL.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((dir / "with.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT p.uid FROM products_fts f JOIN products p ON p.id = f.rowid"
                               " WHERE products_fts MATCH 'content : (mice AND maze)'",
                               -1, &stmt, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "0399144463");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// The noisy ways a user names a title: lowercase, no punctuation, a word
// dropped, wrapped in a question, words added.
std::vector<std::string> noisy_wordings(const std::string& title) {
  std::vector<std::string> words;
  std::string word;
  for (char c : title + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!word.empty()) {
      words.push_back(word);
      word.clear();
    }
  }
  auto join = [](const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& part : parts) out += (out.empty() ? "" : " ") + part;
    return out;
  };
  const std::string plain = join(words);
  std::vector<std::string> wordings = {plain, "tell me about " + plain + "?",
                                       "o que \xC3\xA9 " + plain + "?", "what is " + plain + "?",
                                       "is " + plain + " a good book?"};
  if (words.size() >= 3) {
    auto dropped = words;
    dropped.erase(dropped.begin() + static_cast<long>(words.size() / 2));
    wordings.push_back(join(dropped));
  }
  return wordings;
}

TEST(Catalog, FindsSampleTitlesFromNoisyWordings) {
  const auto records = load_sample();
  SKIP_WITHOUT_SAMPLE(records);
  TempDir dir;
  write_catalog(dir / "catalog.sqlite", records);
  const Catalog catalog(dir / "catalog.sqlite");
  ASSERT_EQ(catalog.size(), static_cast<int64_t>(records.size()));
  int n = 0, top1 = 0, top5 = 0;
  std::string misses;
  const size_t step = records.size() / 100;
  for (size_t i = 0; i < records.size() && i / step < 100; i += step) {
    for (const std::string& wording : noisy_wordings(records[i].title)) {
      const auto titles = titles_of(catalog.find_by_title(wording, 5));
      ++n;
      // An identical title of another product counts as right.
      if (!titles.empty() && titles[0] == records[i].title) {
        ++top1;
      } else {
        misses += "\n  '" + wording + "' -> '" + (titles.empty() ? "" : titles[0]) + "', wanted '" +
                  records[i].title + "'";
      }
      top5 += std::find(titles.begin(), titles.end(), records[i].title) != titles.end();
    }
  }
  ASSERT_GE(n, 500);
  EXPECT_GE(top1, n * 95 / 100) << top1 << " of " << n << " first; misses:" << misses;
  EXPECT_GE(top5, n * 99 / 100) << top5 << " of " << n << " in the first five; misses:" << misses;
  std::cout << "[          ] " << top1 << " of " << n << " first, " << top5 << " in the first five"
            << misses << "\n";
}

}  // namespace
}  // namespace vitrine::catalog
