#include "dataset/line_reader.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace vitrine::dataset {

struct LineReader::Inflater {
  z_stream zs{};
  std::vector<unsigned char> in = std::vector<unsigned char>(1 << 20);
  bool member_open = false;  // inside a gzip member that has not ended
  ~Inflater() { inflateEnd(&zs); }
};

LineReader::LineReader(const std::filesystem::path& path, size_t block_bytes)
    : path_(path), block_bytes_(std::max<size_t>(block_bytes, 4096)) {
  if (is_standard_input(path)) {
    shown_ = "standard input";
    if (::isatty(STDIN_FILENO)) {
      throw std::runtime_error(
          "input '-' is standard input, which is a terminal: pipe or redirect the file in "
          "(`cat trn.json | vitrine prepare -i - ...`, or `-i - < trn.json`)");
    }
    file_ = stdin;
    owns_file_ = false;
  } else {
    shown_ = path.string();
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      throw std::runtime_error(
          fmt::format("cannot open input '{}': {}", path.string(), std::strerror(errno)));
    }
  }
  struct stat st {};
  if (::fstat(::fileno(file_), &st) == 0 && S_ISREG(st.st_mode)) {
    file_bytes_ = static_cast<uint64_t>(st.st_size);
    size_known_ = true;
  }
  try {
    detect_gzip();
  } catch (...) {
    if (owns_file_) std::fclose(file_);
    throw;
  }
}

LineReader::~LineReader() {
  if (file_ != nullptr && owns_file_) std::fclose(file_);
}

std::string LineReader::name() const {
  return is_standard_input(path_) ? "stdin" : path_.filename().string();
}

// A pipe cannot be rewound: the magic bytes read here are handed to the
// decoder (gzip) or kept as the first line data (plain).
void LineReader::detect_gzip() {
  unsigned char magic[2] = {0, 0};
  const size_t got = read_raw(reinterpret_cast<char*>(magic), 2);
  gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (!gzip_) {
    carry_.assign(reinterpret_cast<const char*>(magic), got);
    if (got < 2) eof_ = true;  // a plain stream shorter than the magic is all read
    return;
  }
  inflater_ = std::make_unique<Inflater>();
  if (inflateInit2(&inflater_->zs, 15 + 16) != Z_OK)
    throw std::runtime_error("zlib: inflateInit2 failed");
  std::memcpy(inflater_->in.data(), magic, 2);
  inflater_->zs.next_in = inflater_->in.data();
  inflater_->zs.avail_in = 2;
}

size_t LineReader::read_raw(char* dst, size_t want) {
  const size_t got = std::fread(dst, 1, want, file_);
  if (got < want && std::ferror(file_)) {
    stream_error_ = fmt::format("read error in '{}' at byte {}: {}", shown_, file_position_,
                                std::strerror(errno));
    eof_ = true;
  }
  file_position_ += got;
  return got;
}

size_t LineReader::fill(size_t want) {
  if (eof_) return 0;
  const size_t before = carry_.size();
  if (!gzip_) {
    carry_.resize(before + want);
    const size_t got = read_raw(carry_.data() + before, want);
    carry_.resize(before + got);
    if (got == 0) eof_ = true;
    return got;
  }
  Inflater& inf = *inflater_;
  carry_.resize(before + want);
  inf.zs.next_out = reinterpret_cast<Bytef*>(carry_.data() + before);
  inf.zs.avail_out = static_cast<uInt>(want);
  while (inf.zs.avail_out > 0) {
    if (inf.zs.avail_in == 0) {
      const size_t got = read_raw(reinterpret_cast<char*>(inf.in.data()), inf.in.size());
      if (got == 0) {
        if (inf.member_open && !stream_error_) {
          stream_error_ = fmt::format(
              "truncated gzip stream: '{}' ends inside a compressed member after {} bytes", shown_,
              file_position_);
        }
        eof_ = true;
        break;
      }
      inf.zs.next_in = inf.in.data();
      inf.zs.avail_in = static_cast<uInt>(got);
    }
    inf.member_open = true;
    const int rc = inflate(&inf.zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      inf.member_open = false;
      inflateReset(&inf.zs);  // another member may follow (concatenated gzip)
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      stream_error_ =
          fmt::format("corrupt gzip data in '{}' near compressed byte {}: {}", shown_,
                      file_position_ - inf.zs.avail_in, inf.zs.msg ? inf.zs.msg : "inflate error");
      eof_ = true;
      break;
    }
  }
  const size_t produced = want - inf.zs.avail_out;
  carry_.resize(before + produced);
  return produced;
}

bool LineReader::next(LineBlock& block) {
  // Gather at least block_bytes_ (or up to the end) and cut after the last '\n'.
  while (carry_.size() < block_bytes_ && !eof_) fill(block_bytes_ - carry_.size() + (64 << 10));
  size_t cut = carry_.empty() ? 0 : carry_.size();
  if (!eof_ || carry_.size() > block_bytes_) {
    const void* nl = nullptr;
    for (;;) {
      nl = memrchr(carry_.data(), '\n', carry_.size());
      if (nl != nullptr || eof_) break;
      fill(block_bytes_);  // a line longer than a block: keep reading
    }
    cut = nl != nullptr ? static_cast<size_t>(static_cast<const char*>(nl) - carry_.data()) + 1
                        : carry_.size();
  }
  if (cut == 0) return false;
  block.size = cut;
  if (block.capacity < cut + kPadding) {
    block.capacity = std::max(cut + kPadding, block_bytes_ + (block_bytes_ >> 2));
    block.bytes.reset(new char[block.capacity]);  // not zeroed: every byte read is written first
  }
  std::memcpy(block.bytes.get(), carry_.data(), cut);
  std::memset(block.bytes.get() + cut, 0, kPadding);
  carry_.erase(0, cut);
  block.first_line = next_line_;
  block.sequence = next_sequence_++;
  const char* begin = block.bytes.get();
  uint64_t newlines = static_cast<uint64_t>(std::count(begin, begin + cut, '\n'));
  if (begin[cut - 1] != '\n') ++newlines;  // the file's last line, without '\n'
  next_line_ += newlines;
  data_bytes_ += cut;
  return true;
}

}  // namespace vitrine::dataset
