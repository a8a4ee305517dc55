// Scalars in TensorBoard's event-file format, so `tensorboard --logdir
// out/run/tensorboard` plots a run's losses without any Python in the loop.
//
// An event file is a sequence of TFRecords (length, masked CRC-32C of the
// length, data, masked CRC-32C of the data), each holding a serialised
// tensorflow.Event: first one with file_version "brain.Event:2", then one per
// scalar with wall_time, step and a Summary value (tag, simple_value). The
// protobuf encoding is written by hand: it is five fields. Each record is
// flushed as written, so a crash loses at most the record being written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace vitrine::training {

// CRC-32C (Castagnoli), as TFRecord uses it.
uint32_t crc32c(std::string_view bytes);

class TensorBoardWriter {
 public:
  // Creates `dir` and events.out.tfevents.<seconds>.<host>.<pid> in it.
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  void scalar(std::string_view tag, double value, int64_t step);
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_record(const std::string& data);

  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace vitrine::training
