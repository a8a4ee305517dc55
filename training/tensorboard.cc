#include "training/tensorboard.h"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "common/clock.h"

namespace vitrine::training {
namespace {

std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

uint32_t masked_crc(std::string_view bytes) {
  const uint32_t crc = crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Protobuf wire format: varints, and fields by number and wire type.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void key(std::string& out, int field, int wire_type) {
  varint(out, static_cast<uint64_t>(field << 3 | wire_type));
}
void fixed64_double(std::string& out, int field, double value) {
  key(out, field, 1);
  char bytes[8];
  std::memcpy(bytes, &value, 8);
  out.append(bytes, 8);
}
void fixed32_float(std::string& out, int field, float value) {
  key(out, field, 5);
  char bytes[4];
  std::memcpy(bytes, &value, 4);
  out.append(bytes, 4);
}
void length_delimited(std::string& out, int field, std::string_view bytes) {
  key(out, field, 2);
  varint(out, bytes.size());
  out.append(bytes);
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  static const std::array<uint32_t, 256> table = crc32c_table();
  uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) crc = table[(crc ^ static_cast<uint8_t>(c)) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

TensorBoardWriter::TensorBoardWriter(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = dir / fmt::format("events.out.tfevents.{}.{}.{}", static_cast<int64_t>(unix_seconds()),
                            host, getpid());
  out_.open(path_, std::ios::binary);
  if (!out_) throw std::runtime_error(fmt::format("cannot write '{}'", path_.string()));
  std::string event;  // Event { wall_time = 1; file_version = 3 }
  fixed64_double(event, 1, unix_seconds());
  length_delimited(event, 3, "brain.Event:2");
  write_record(event);
}

void TensorBoardWriter::scalar(std::string_view tag, double value, int64_t step) {
  std::string summary_value;  // Summary.Value { tag = 1; simple_value = 2 }
  length_delimited(summary_value, 1, tag);
  fixed32_float(summary_value, 2, static_cast<float>(value));
  std::string summary;  // Summary { repeated Value value = 1 }
  length_delimited(summary, 1, summary_value);
  std::string event;  // Event { wall_time = 1; step = 2; summary = 5 }
  fixed64_double(event, 1, unix_seconds());
  key(event, 2, 0);
  varint(event, static_cast<uint64_t>(step));
  length_delimited(event, 5, summary);
  write_record(event);
}

void TensorBoardWriter::write_record(const std::string& data) {
  std::string header(8, '\0');
  const uint64_t length = data.size();
  std::memcpy(header.data(), &length, 8);  // little-endian, as the format requires
  const uint32_t length_crc = masked_crc(header), data_crc = masked_crc(data);
  out_.write(header.data(), 8);
  out_.write(reinterpret_cast<const char*>(&length_crc), 4);
  out_.write(data.data(), static_cast<std::streamsize>(data.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
  out_.flush();
}

}  // namespace vitrine::training
