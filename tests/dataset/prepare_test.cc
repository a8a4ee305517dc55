// End-to-end tests of `prepare` on the shared sample and on files made here.
#include "dataset/prepare.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <map>
#include <set>

#include "tests/dataset/fifo_writer.h"
#include "tests/support/gzip.h"
#include "tests/support/temp_dir.h"

namespace vitrine::dataset {
namespace {

namespace fs = std::filesystem;
using testing::FifoWriter;
using testing::gzip;
using testing::read_file;
using testing::shared_path;
using testing::TempDir;
using testing::write_file;

const fs::path kSample = shared_path("data/amazon_titles_sample.jsonl");

#define REQUIRE_SAMPLE()                                            \
  if (!fs::exists(kSample))                                         \
  GTEST_SKIP() << "shared sample not found at " << kSample.string() \
               << " (../shared is not beside this checkout)"

PrepareConfig quiet_config() {
  PrepareConfig config;
  config.threads = 2;
  return config;
}

PrepareHooks quiet() {
  PrepareHooks hooks;
  hooks.progress = false;
  return hooks;
}

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Every file under `dir`, relative path -> bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_file(e.path());
  }
  return files;
}

std::string record(const std::string& uid, const std::string& title, const std::string& content) {
  nlohmann::json j = {{"uid", uid},
                      {"title", title},
                      {"content", content},
                      {"target_ind", {1, 2}},
                      {"target_rel", {1.0, 1.0}}};
  return j.dump() + "\n";
}

const std::string kLongText =
    "A practical guide to the subject, written for beginners and experts alike. It covers the "
    "basics in depth.";

TEST(Prepare, SampleCountsAddUpAndMatchTheDataReadme) {
  REQUIRE_SAMPLE();
  TempDir dir;
  const auto result = run_prepare(kSample, dir / "ds", quiet_config(), quiet());
  const auto& s = result.stats;
  EXPECT_EQ(s["input"]["lines"], 884);
  EXPECT_EQ(s["malformed"]["total"], 0);
  EXPECT_EQ(s["records"]["parsed"], 884);
  uint64_t dropped = 0;
  for (const auto& d : s["drops"]) dropped += d["records"].get<uint64_t>();
  EXPECT_EQ(s["records"]["kept"].get<uint64_t>() + dropped, 884u);
  EXPECT_EQ(result.kept, s["records"]["kept"].get<uint64_t>());
  // ../shared/data/README.md: entities in 19 titles and 180 contents, the
  // edition note in 180 contents, 6 empty contents, no tags.
  std::map<std::string, nlohmann::ordered_json> rules;
  for (const auto& t : s["transforms"]) rules[t["rule"]] = t;
  EXPECT_EQ(rules["html_entities_decoded"]["titles"], 19);
  EXPECT_EQ(rules["html_entities_decoded"]["contents"], 180);
  EXPECT_EQ(rules["edition_boilerplate_removed"]["contents"], 180);
  EXPECT_EQ(rules["html_tags_stripped"]["contents"], 0);
  EXPECT_EQ(s["records"]["raw_empty_content"], 6);
  // Split sizes add up; task files exist with one describe line per product.
  uint64_t split_total = 0;
  for (const auto& [name, n] : s["splits"]["products"].items()) split_total += n.get<uint64_t>();
  EXPECT_EQ(split_total, result.kept);
  uint64_t describe_lines = 0;
  for (const char* split : {"train", "validation", "test"}) {
    describe_lines +=
        read_jsonl(dir / "ds" / "tasks" / "describe" / (std::string(split) + ".jsonl")).size();
  }
  EXPECT_EQ(describe_lines, result.kept);
  EXPECT_TRUE(fs::exists(dir / "ds" / "catalog.sqlite"));
  EXPECT_EQ(nlohmann::json::parse(read_file(dir / "ds" / "stats.json"))["records"]["kept"],
            result.kept);
  EXPECT_NE(read_file(dir / "ds" / "report.md").find("edition_boilerplate_removed"),
            std::string::npos);
}

TEST(Prepare, OutputIsByteIdenticalWhateverTheThreadsAndBlocks) {
  REQUIRE_SAMPLE();
  TempDir dir;
  PrepareConfig one = quiet_config();
  one.threads = 1;
  PrepareConfig many = quiet_config();
  many.threads = 3;
  many.block_bytes = 8192;  // ~80 blocks, out-of-order completion
  run_prepare(kSample, dir / "a", one, quiet());
  run_prepare(kSample, dir / "b", many, quiet());
  run_prepare(kSample, dir / "c", one, quiet());
  const auto a = snapshot(dir / "a");
  ASSERT_GE(a.size(), 12u);  // catalogue, 9 task files, stats, report
  const auto b = snapshot(dir / "b");
  const auto c = snapshot(dir / "c");
  for (const auto& [name, bytes] : a) {
    EXPECT_TRUE(bytes == c.at(name)) << name << " differs between two identical runs";
    if (name == "stats.json" || name == "report.md")
      continue;  // they record run.threads and run.block_bytes
    EXPECT_TRUE(bytes == b.at(name)) << name << " depends on threads or block size";
  }
}

TEST(Prepare, EveryMalformedKindIsCountedWithItsLineNumber) {
  TempDir dir;
  std::string input;
  input += record("u1", "Good Title One", kLongText);  // 1
  input += "\n";                                       // 2 blank
  input += R"({"uid": "u2", "title": "Trunc)"
           "\n";           // 3 truncated JSON
  input += "[1, 2, 3]\n";  // 4 not an object
  input += R"({"uid": "u3", "content": "no title here at all"})"
           "\n";  // 5 missing title
  input += R"({"uid": "u4", "title": 42, "content": "number title"})"
           "\n";  // 6 title not a string
  static constexpr char kNulLine[] =
      "{\"uid\": \"u5\", \"title\": \"nul\0byte\", \"content\": \"x\"}\n";
  input += std::string(kNulLine, sizeof kNulLine - 1);  // 7 NUL
  input += "{\"uid\": \"u6\", \"title\": \"Bad \xff\xfe Bytes\", \"content\": \"" + kLongText +
           "\"}\n";                                               // 8 bad UTF-8
  input += record("u7", "Good Title Two", kLongText + " More.");  // 9
  write_file(dir / "in.jsonl", input);

  PrepareConfig config = quiet_config();
  config.repair_utf8 = false;
  auto result = run_prepare(dir / "in.jsonl", dir / "ds", config, quiet());
  const auto& m = result.stats["malformed"];
  EXPECT_EQ(m["total"], 7);
  EXPECT_EQ(m["by_reason"]["blank_line"], 1);
  EXPECT_EQ(m["by_reason"]["bad_json"], 1);
  EXPECT_EQ(m["by_reason"]["not_an_object"], 1);
  EXPECT_EQ(m["by_reason"]["missing_title"], 1);
  EXPECT_EQ(m["by_reason"]["title_not_a_string"], 1);
  EXPECT_EQ(m["by_reason"]["nul_byte"], 1);
  EXPECT_EQ(m["by_reason"]["invalid_utf8"], 1);
  std::vector<uint64_t> lines;
  for (const auto& e : m["first"]) lines.push_back(e["line"]);
  EXPECT_EQ(lines, (std::vector<uint64_t>{2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(result.kept, 2u);

  // With repair on, the bad bytes become U+FFFD and the record is kept.
  config.repair_utf8 = true;
  result = run_prepare(dir / "in.jsonl", dir / "ds", config, quiet());
  EXPECT_EQ(result.stats["malformed"]["total"], 6);
  EXPECT_EQ(result.kept, 3u);
}

TEST(Prepare, DuplicateKeysAreCountedWithTheirLineNumbers) {
  TempDir dir;
  std::string input;
  input += record("u1", "Good Title One", kLongText);  // 1
  input += R"({"uid": "u2", "title": "Kept Title", "content": ")" + kLongText +
           R"(", "title": "Ignored Title"})"
           "\n";                                                     // 2: title twice
  input += record("u3", "Good Title Three", kLongText + " Three.");  // 3
  input += R"({"uid": "u4", "uid": "u5", "title": "Good Title Four", "content": ")" + kLongText +
           R"( Four."})"
           "\n";  // 4: uid twice
  write_file(dir / "in.jsonl", input);
  const auto result = run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  EXPECT_EQ(result.stats["malformed"]["total"], 0);
  EXPECT_EQ(result.kept, 4u);
  std::map<std::string, nlohmann::ordered_json> rules;
  for (const auto& t : result.stats["transforms"]) rules[t["rule"]] = t;
  ASSERT_TRUE(rules.count("duplicate_keys_first_used"));
  const auto& rule = rules["duplicate_keys_first_used"];
  EXPECT_EQ(rule["titles"], 2);  // records, counted in the first column like other record rules
  std::vector<uint64_t> lines;
  for (const auto& e : rule["examples"]) lines.push_back(e["line"]);
  EXPECT_EQ(lines, (std::vector<uint64_t>{2, 4}));
  EXPECT_NE(rule["examples"][0]["after"].get<std::string>().find("\"title\""), std::string::npos)
      << rule["examples"][0];
  const std::string report = read_file(dir / "ds" / "report.md");
  EXPECT_NE(report.find("| duplicate_keys_first_used | 2 |"), std::string::npos);
  // The first value is the one used.
  std::set<std::string> titles, uids;
  for (const char* split : {"train", "validation", "test"}) {
    for (const auto& j :
         read_jsonl(dir / "ds" / "tasks" / "describe" / (std::string(split) + ".jsonl"))) {
      titles.insert(j["prompt"]);
      uids.insert(j["uid"]);
    }
  }
  EXPECT_TRUE(titles.count("Kept Title"));
  EXPECT_TRUE(uids.count("u4"));
  EXPECT_FALSE(uids.count("u5"));
}

TEST(Prepare, HugeNumbersInIgnoredFieldsKeepTheRecord) {
  TempDir dir;
  const std::string digits(60, '7');
  std::string input;
  input += record("u1", "Good Title One", kLongText);
  input += R"({"uid": "u2", "title": "Huge Targets", "content": ")" + kLongText +
           R"(", "target_ind": [1e400, )" + digits + R"(], "target_rel": [)" + digits + "]}\n";
  write_file(dir / "in.jsonl", input);
  const auto result = run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), quiet());
  EXPECT_EQ(result.stats["malformed"]["total"], 0) << result.stats["malformed"];
  EXPECT_EQ(result.kept, 2u);
}

TEST(Prepare, DropRulesFireInOrderAndDuplicatesKeepTheFirst) {
  TempDir dir;
  std::string input;
  input += record("a", "", kLongText);                     // empty title
  input += record("b", "X", kLongText);                    // short title
  input += record("c", std::string(500, 't'), kLongText);  // long title
  input += record("d", "No Content", "");                  // empty content
  input += record("e", "Short Content", "Paperback.");     // short content
  input += record("f", "Same As Title Repeated Here Ok", "Same As Title Repeated Here Ok and more");
  input += record("g", "A Kept Book", kLongText);                   // kept
  input += record("h", "a kept  BOOK", kLongText);                  // duplicate after normalising
  input += record("g", "Another Book", kLongText + " Different.");  // duplicate uid
  input += record("i", "Echo Title Long Enough Here",
                  "Echo Title Long Enough Here");  // content == title... short too
  write_file(dir / "in.jsonl", input);
  PrepareConfig config = quiet_config();
  config.filter.min_content_chars = 20;
  const auto result = run_prepare(dir / "in.jsonl", dir / "ds", config, quiet());
  std::map<std::string, uint64_t> drops;
  for (const auto& d : result.stats["drops"]) drops[d["rule"]] = d["records"];
  EXPECT_EQ(drops["empty_title"], 1u);
  EXPECT_EQ(drops["short_title"], 1u);
  EXPECT_EQ(drops["long_title"], 1u);
  EXPECT_EQ(drops["empty_content"], 1u);
  EXPECT_EQ(drops["short_content"], 1u);
  EXPECT_EQ(drops["content_equals_title"], 1u);
  EXPECT_EQ(drops["duplicate"], 1u);
  EXPECT_EQ(drops["duplicate_uid"], 1u);
  EXPECT_EQ(result.kept, 2u);  // f and g
  const auto describe = read_jsonl(dir / "ds" / "tasks" / "describe" / "train.jsonl");
  std::set<std::string> uids;
  for (const char* split : {"train", "validation", "test"}) {
    for (const auto& j :
         read_jsonl(dir / "ds" / "tasks" / "describe" / (std::string(split) + ".jsonl")))
      uids.insert(j["uid"]);
  }
  EXPECT_EQ(uids, (std::set<std::string>{"f", "g"}));
}

TEST(Prepare, GzipInputGivesTheSameDataset) {
  REQUIRE_SAMPLE();
  TempDir dir;
  write_file(dir / "trn.json.gz", gzip(read_file(kSample)));
  run_prepare(kSample, dir / "plain", quiet_config(), quiet());
  const auto result = run_prepare(dir / "trn.json.gz", dir / "gz", quiet_config(), quiet());
  EXPECT_TRUE(result.stats["input"]["gzip"].get<bool>());
  const auto plain = snapshot(dir / "plain");
  const auto gz = snapshot(dir / "gz");
  for (const auto& [name, bytes] : plain) {
    if (name == "stats.json" || name == "report.md") continue;  // they name the input file
    EXPECT_TRUE(bytes == gz.at(name)) << name << " differs between gzip and plain input";
  }
}

TEST(Prepare, PipedInputPlainOrGzipGivesTheSameDataset) {
  REQUIRE_SAMPLE();
  TempDir dir;
  const auto from_file = run_prepare(kSample, dir / "file", quiet_config(), quiet());
  const auto files = snapshot(dir / "file");
  const std::string text = read_file(kSample);
  for (const bool packed : {false, true}) {
    SCOPED_TRACE(packed ? "gzip" : "plain");
    const std::string bytes = packed ? gzip(text) : text;
    const fs::path out = dir / (packed ? "gz" : "plain");
    PrepareResult piped;
    {
      FifoWriter fifo(dir / (packed ? "gz.fifo" : "plain.fifo"), bytes);
      piped = run_prepare(fifo.path(), out, quiet_config(), quiet());
    }
    const auto& s = piped.stats;
    EXPECT_EQ(s["input"]["lines"], 884);  // the first record is not lost
    EXPECT_EQ(s["input"]["gzip"], packed);
    EXPECT_EQ(s["input"]["bytes"], bytes.size());
    EXPECT_EQ(s["input"]["data_bytes"], text.size());
    EXPECT_EQ(s["input"]["fingerprint"], from_file.stats["input"]["fingerprint"]);
    EXPECT_EQ(piped.kept, from_file.kept);
    for (const auto& [name, content] : snapshot(out)) {
      if (name == "stats.json" || name == "report.md") continue;  // they name the input
      EXPECT_TRUE(content == files.at(name)) << name << " differs from the file's";
    }
  }
}

TEST(Prepare, TruncatedGzipKeepsWhatWasReadAndReportsIt) {
  REQUIRE_SAMPLE();
  TempDir dir;
  const std::string packed = gzip(read_file(kSample));
  write_file(dir / "cut.json.gz", packed.substr(0, packed.size() * 2 / 3));
  const auto result = run_prepare(dir / "cut.json.gz", dir / "ds", quiet_config(), quiet());
  EXPECT_GT(result.kept, 100u);
  EXPECT_LT(result.stats["input"]["lines"].get<uint64_t>(), 884u);
  ASSERT_TRUE(result.stats["input"]["stream_error"].is_string());
  EXPECT_NE(read_file(dir / "ds" / "report.md").find("truncated gzip"), std::string::npos);
}

TEST(Prepare, NothingKeptFailsAndLeavesTheGoodDatasetAlone) {
  TempDir dir;
  write_file(dir / "good.jsonl", record("g", "A Good Product Title", kLongText));
  run_prepare(dir / "good.jsonl", dir / "ds", quiet_config(), quiet());
  const auto before = snapshot(dir / "ds");
  write_file(dir / "bad.jsonl", "not json\n\n{\"title\": 1}\n");
  try {
    run_prepare(dir / "bad.jsonl", dir / "ds", quiet_config(), quiet());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nothing kept"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 malformed"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(snapshot(dir / "ds") == before) << "a failed run changed the existing dataset";
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".ds.tmp"), std::string::npos)
        << "staging left behind";
  }
}

TEST(Prepare, CancelWritesNothing) {
  TempDir dir;
  write_file(dir / "in.jsonl", record("g", "A Good Product Title", kLongText));
  std::atomic<bool> cancel{true};
  PrepareHooks hooks = quiet();
  hooks.cancel = &cancel;
  EXPECT_THROW(run_prepare(dir / "in.jsonl", dir / "ds", quiet_config(), hooks),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(dir / "ds"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), {}), 1);
}

TEST(Prepare, UnreadableInputIsAnError) {
  TempDir dir;
  EXPECT_THROW(run_prepare(dir / "missing.json", dir / "ds", quiet_config(), quiet()),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(dir / "ds"));
}

TEST(Prepare, SplitDependsOnlyOnTheUid) {
  REQUIRE_SAMPLE();
  TempDir dir;
  // The sample reversed: another file order must not move any product.
  std::vector<std::string> lines;
  {
    std::ifstream in(kSample);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line + "\n");
  }
  std::string reversed;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) reversed += *it;
  write_file(dir / "rev.jsonl", reversed);
  run_prepare(kSample, dir / "a", quiet_config(), quiet());
  run_prepare(dir / "rev.jsonl", dir / "b", quiet_config(), quiet());
  auto splits_of = [](const fs::path& ds) {
    std::map<std::string, std::string> m;
    for (const char* split : {"train", "validation", "test"}) {
      for (const auto& j : read_jsonl(ds / "tasks" / "describe" / (std::string(split) + ".jsonl")))
        m[j["uid"]] = split;
    }
    return m;
  };
  const auto a = splits_of(dir / "a");
  EXPECT_EQ(a, splits_of(dir / "b"));
  std::set<std::string> used;
  for (const auto& [uid, split] : a) used.insert(split);
  EXPECT_EQ(used.size(), 3u);
}

TEST(Prepare, ConfigKeysAreCheckedByName) {
  PrepareConfig config;
  apply_config_json(nlohmann::json::parse(
                        R"({"filter": {"min_content_chars": 10}, "split": {"test_ratio": 0.2}})"),
                    config);
  EXPECT_EQ(config.filter.min_content_chars, 10u);
  EXPECT_DOUBLE_EQ(config.split.test_ratio, 0.2);
  EXPECT_EQ(config.filter.max_title_chars, 400u);  // untouched default
  auto error_of = [](const char* text) {
    PrepareConfig c;
    try {
      apply_config_json(nlohmann::json::parse(text), c);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of(R"({"filter": {"min_content": 10}})").find("filter.min_content"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"filters": {}})").find("filters"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": {"strip_tags": "yes"}})").find("clean.strip_tags"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"filter": {"min_content_chars": -1}})").find(">= 0"), std::string::npos);
  EXPECT_NE(error_of(R"({"split": {"test_ratio": 0.6, "validation_ratio": 0.5}})").find("ratio"),
            std::string::npos);
  // The JSON written to stats.json reads back to the same config.
  PrepareConfig round;
  apply_config_json(config_to_json(config), round);
  EXPECT_EQ(config_to_json(round), config_to_json(config));
}

TEST(Prepare, SplitAssignmentIsStableAcrossVersions) {
  // These assignments are part of the dataset format: a change here moves
  // products between train and test, so it must come with a new
  // dataset_format. (XXH3-64 of the uid, seed 0, top 53 bits as u in [0, 1):
  // test below 0.05, validation below 0.10; `xxhsum -H3` shows the hashes.)
  const std::vector<std::pair<std::string, catalog::Split>> golden = {
      {"0000031909", catalog::Split::kTrain},    {"0001360000", catalog::Split::kTrain},
      {"B00005N5PF", catalog::Split::kTrain},    {"B1000007", catalog::Split::kValidation},
      {"B1000015", catalog::Split::kValidation}, {"B1000022", catalog::Split::kTest},
      {"B1000024", catalog::Split::kTest},       {"B1000038", catalog::Split::kTest},
      {"B1000048", catalog::Split::kValidation},
  };
  for (const auto& [uid, split] : golden)
    EXPECT_EQ(assign_split(uid, SplitOptions{}), split) << uid;

  SplitOptions options;
  int counts[3] = {0, 0, 0};
  std::string uid;
  for (int i = 0; i < 20000; ++i) {
    uid = fmt::format("B{}", 1000000 + i);
    ++counts[static_cast<int>(assign_split(uid, options))];
  }
  EXPECT_NEAR(counts[0] / 20000.0, 0.90, 0.01);
  EXPECT_NEAR(counts[1] / 20000.0, 0.05, 0.01);
  EXPECT_NEAR(counts[2] / 20000.0, 0.05, 0.01);
  options.seed = 7;
  int moved = 0;
  for (int i = 0; i < 2000; ++i) {
    uid = fmt::format("B{}", 1000000 + i);
    moved += assign_split(uid, options) != assign_split(uid, SplitOptions{});
  }
  EXPECT_GT(moved, 50);  // the seed changes the assignment
}

}  // namespace
}  // namespace vitrine::dataset
