// Streams a JSON Lines file, plain or gzip, in blocks of whole lines.
//
// The raw AmazonTitles file ships as trn.json.gz (about 1.9 GB inflated): the
// reader inflates as it goes (any number of gzip members), hands out blocks of
// complete lines with the number of their first line, and keeps memory to a
// couple of blocks whatever the file size. Each block carries spare bytes
// after its last line so simdjson can parse lines in place. A gzip stream that
// is truncated or corrupt ends the stream early: the lines read so far are
// delivered and stream_error() says what happened and where. The input may
// be a pipe, a FIFO or standard input ("-"): the bytes read to recognise gzip
// are kept, and the size is then counted as the stream is read. Not a goal:
// seeking, or formats other than gzip.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vitrine::dataset {

struct LineBlock {
  std::unique_ptr<char[]>
      bytes;  // [capacity]: lines, each ending in '\n' except maybe the file's last, then padding
  size_t capacity =
      0;            // allocated bytes (>= size + kPadding); blocks are reused to avoid page faults
  size_t size = 0;  // bytes of line data (padding excluded)
  const char* data() const { return bytes.get(); }
  uint64_t first_line = 1;  // 1-based number of the first line in the block
  uint64_t sequence = 0;    // 0, 1, 2, ... in file order
};

// "-" names standard input.
inline bool is_standard_input(const std::filesystem::path& path) {
  return path == "-";
}

class LineReader {
 public:
  static constexpr size_t kPadding = 64;  // >= SIMDJSON_PADDING

  // Opens `path` ("-" = standard input); gzip is recognised by its magic
  // bytes, not its name. Throws std::runtime_error naming the file when it
  // cannot be opened, or when standard input is a terminal.
  explicit LineReader(const std::filesystem::path& path, size_t block_bytes = 4 << 20);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Fills `block` with the next lines; false at the end of the stream.
  // A single line longer than block_bytes makes a larger block.
  bool next(LineBlock& block);

  bool is_gzip() const { return gzip_; }
  // The input's size: known up front for a regular file (size_known());
  // for a pipe, the bytes read so far, which is all of them at the end.
  uint64_t file_bytes() const { return size_known_ ? file_bytes_ : file_position_; }
  bool size_known() const { return size_known_; }
  // The file name stats.json records: "stdin" for "-".
  std::string name() const;
  // Bytes of the file consumed so far (compressed bytes for gzip).
  uint64_t file_position() const { return file_position_; }
  // Bytes of line data delivered so far (inflated bytes for gzip).
  uint64_t data_bytes() const { return data_bytes_; }
  uint64_t lines() const { return next_line_ - 1; }
  // Set when the stream ended early: truncated or corrupt gzip, read error.
  const std::optional<std::string>& stream_error() const { return stream_error_; }

 private:
  // Reads the first bytes to recognise gzip, keeping them for the decoder.
  void detect_gzip();
  // Appends up to `want` decoded bytes to carry_; returns bytes added (0 = end).
  size_t fill(size_t want);
  size_t read_raw(char* dst, size_t want);

  std::filesystem::path path_;
  std::string shown_;  // the path in messages; "standard input" for "-"
  std::FILE* file_ = nullptr;
  bool owns_file_ = true;  // false for stdin
  bool gzip_ = false;
  bool eof_ = false;
  size_t block_bytes_;
  uint64_t file_bytes_ = 0;
  bool size_known_ = false;
  uint64_t file_position_ = 0;
  uint64_t data_bytes_ = 0;
  uint64_t next_line_ = 1;
  uint64_t next_sequence_ = 0;
  std::string carry_;  // decoded bytes not yet handed out
  std::optional<std::string> stream_error_;

  struct Inflater;
  std::unique_ptr<Inflater> inflater_;
};

}  // namespace vitrine::dataset
