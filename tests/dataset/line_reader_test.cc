#include "dataset/line_reader.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "tests/dataset/fifo_writer.h"
#include "tests/support/gzip.h"
#include "tests/support/temp_dir.h"

namespace vitrine::dataset {
namespace {

using testing::FifoWriter;
using testing::gzip;
using testing::TempDir;
using testing::write_file;

// All lines of the file, with the line number of each block checked.
std::vector<std::string> read_all(LineReader& reader) {
  std::vector<std::string> lines;
  LineBlock block;
  uint64_t expected_first = 1;
  uint64_t expected_sequence = 0;
  while (reader.next(block)) {
    EXPECT_EQ(block.first_line, expected_first);
    EXPECT_EQ(block.sequence, expected_sequence++);
    EXPECT_GE(block.capacity, block.size + LineReader::kPadding);
    std::string_view data(block.data(), block.size);
    size_t start = 0;
    while (start < data.size()) {
      size_t nl = data.find('\n', start);
      if (nl == std::string_view::npos) nl = data.size();
      lines.emplace_back(data.substr(start, nl - start));
      start = nl + 1;
    }
    expected_first += std::count(data.begin(), data.end(), '\n') + (data.back() == '\n' ? 0 : 1);
  }
  return lines;
}

std::string numbered_lines(int n, size_t width) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += std::to_string(i) + std::string(width, 'x') + "\n";
  return s;
}

TEST(LineReader, ReadsPlainFilesInBlocksOfWholeLines) {
  TempDir dir;
  write_file(dir / "a.jsonl", numbered_lines(5000, 50));
  LineReader reader(dir / "a.jsonl", 4096);
  EXPECT_FALSE(reader.is_gzip());
  const auto lines = read_all(reader);
  ASSERT_EQ(lines.size(), 5000u);
  EXPECT_EQ(lines[4999], "5000" + std::string(50, 'x'));
  EXPECT_EQ(reader.lines(), 5000u);
  EXPECT_FALSE(reader.stream_error());
}

TEST(LineReader, KeepsALastLineWithoutNewlineAndLinesLongerThanABlock) {
  TempDir dir;
  const std::string long_line(20000, 'y');
  write_file(dir / "a.jsonl", "first\n" + long_line + "\nlast");
  LineReader reader(dir / "a.jsonl", 4096);
  const auto lines = read_all(reader);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], long_line);
  EXPECT_EQ(lines[2], "last");
}

TEST(LineReader, InflatesGzipRecognisedByMagicNotName) {
  TempDir dir;
  const std::string text = numbered_lines(3000, 40);
  write_file(dir / "trn.json", gzip(text));  // no .gz suffix
  LineReader reader(dir / "trn.json", 4096);
  EXPECT_TRUE(reader.is_gzip());
  const auto lines = read_all(reader);
  EXPECT_EQ(lines.size(), 3000u);
  EXPECT_EQ(reader.data_bytes(), text.size());
  EXPECT_FALSE(reader.stream_error());
}

TEST(LineReader, ReadsConcatenatedGzipMembers) {
  TempDir dir;
  write_file(dir / "a.gz", gzip("one\ntwo\n") + gzip("three\n"));
  LineReader reader(dir / "a.gz");
  EXPECT_EQ(read_all(reader), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_FALSE(reader.stream_error());
}

TEST(LineReader, TruncatedGzipDeliversWhatItCanAndSaysWhere) {
  TempDir dir;
  const std::string packed = gzip(numbered_lines(20000, 30));
  write_file(dir / "cut.gz", packed.substr(0, packed.size() / 2));
  LineReader reader(dir / "cut.gz", 4096);
  const auto lines = read_all(reader);
  EXPECT_GT(lines.size(), 100u);
  EXPECT_LT(lines.size(), 20000u);
  EXPECT_EQ(lines[0], "1" + std::string(30, 'x'));
  ASSERT_TRUE(reader.stream_error());
  EXPECT_NE(reader.stream_error()->find("truncated gzip"), std::string::npos)
      << *reader.stream_error();
  EXPECT_NE(reader.stream_error()->find("cut.gz"), std::string::npos);
}

TEST(LineReader, CorruptGzipStopsWithAnError) {
  TempDir dir;
  std::string packed = gzip(numbered_lines(2000, 30));
  for (size_t i = packed.size() / 2; i < packed.size() / 2 + 64; ++i)
    packed[i] = static_cast<char>(packed[i] ^ 0x5a);
  write_file(dir / "bad.gz", packed);
  LineReader reader(dir / "bad.gz", 4096);
  read_all(reader);
  ASSERT_TRUE(reader.stream_error());
}

TEST(LineReader, ReadsAPipeWithoutLosingItsFirstBytes) {
  TempDir dir;
  const std::string text = numbered_lines(3000, 40);
  FifoWriter fifo(dir / "in.fifo", text);
  LineReader reader(fifo.path(), 4096);
  EXPECT_FALSE(reader.is_gzip());
  EXPECT_FALSE(reader.size_known());
  const auto lines = read_all(reader);
  ASSERT_EQ(lines.size(), 3000u);
  EXPECT_EQ(lines[0], "1" + std::string(40, 'x'));
  EXPECT_EQ(reader.data_bytes(), text.size());
  EXPECT_EQ(reader.file_bytes(), text.size());  // counted as read
  EXPECT_FALSE(reader.stream_error());
}

TEST(LineReader, InflatesGzipFromAPipe) {
  TempDir dir;
  const std::string text = numbered_lines(3000, 40);
  const std::string packed = gzip(text) + gzip("last\n");
  FifoWriter fifo(dir / "in.fifo", packed);
  LineReader reader(fifo.path(), 4096);
  EXPECT_TRUE(reader.is_gzip());
  const auto lines = read_all(reader);
  ASSERT_EQ(lines.size(), 3001u);
  EXPECT_EQ(lines[0], "1" + std::string(40, 'x'));
  EXPECT_EQ(lines[3000], "last");
  EXPECT_EQ(reader.file_bytes(), packed.size());
  EXPECT_FALSE(reader.stream_error()) << *reader.stream_error();
}

TEST(LineReader, ShortPipesAreReadWhole) {
  // Fewer bytes than the gzip magic, and exactly its length.
  for (const std::string text : {"", "a", "ab", "\x1f", "{\n"}) {
    TempDir dir;
    FifoWriter fifo(dir / "in.fifo", text);
    LineReader reader(fifo.path());
    LineBlock block;
    std::string got;
    while (reader.next(block)) got.append(block.data(), block.size);
    EXPECT_EQ(got, text);
    EXPECT_FALSE(reader.is_gzip());
  }
}

TEST(LineReader, SizeOfARegularFileIsKnownUpFront) {
  TempDir dir;
  write_file(dir / "a.jsonl", "one\ntwo\n");
  LineReader reader(dir / "a.jsonl");
  EXPECT_TRUE(reader.size_known());
  EXPECT_EQ(reader.file_bytes(), 8u);
}

TEST(LineReader, MissingFileIsAClearError) {
  try {
    LineReader reader("/no/such/trn.json");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/trn.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace vitrine::dataset
