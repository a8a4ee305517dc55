// Event files decoded by the protobuf library itself (as schema-less fields),
// so the hand-written encoding is checked by an independent parser.
#include "training/tensorboard.h"

#include <google/protobuf/unknown_field_set.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "tests/support/temp_dir.h"

namespace vitrine::training {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

TEST(TensorBoard, Crc32cKnownValues) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(crc32c(""), 0u);
}

const UnknownField* field(const UnknownFieldSet& set, int number) {
  for (int i = 0; i < set.field_count(); ++i) {
    if (set.field(i).number() == number) return &set.field(i);
  }
  return nullptr;
}

TEST(TensorBoard, RecordsAreFramedAndEventsDecode) {
  testing::TempDir dir;
  std::filesystem::path file;
  {
    TensorBoardWriter writer(dir / "tb");
    writer.scalar("describe/loss", 2.5, 7);
    writer.scalar("describe/validation_loss", 3.25, 10);
    file = writer.path();
  }
  EXPECT_EQ(file.filename().string().rfind("events.out.tfevents.", 0), 0u);
  const std::string bytes = testing::read_file(file);
  std::vector<std::unique_ptr<UnknownFieldSet>> events;
  size_t pos = 0;
  while (pos < bytes.size()) {
    ASSERT_LE(pos + 12, bytes.size());
    uint64_t length = 0;
    std::memcpy(&length, bytes.data() + pos, 8);
    uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length_crc, bytes.data() + pos + 8, 4);
    const uint32_t raw = crc32c(bytes.substr(pos, 8));
    EXPECT_EQ(length_crc, ((raw >> 15) | (raw << 17)) + 0xa282ead8u);
    const std::string data = bytes.substr(pos + 12, length);
    std::memcpy(&data_crc, bytes.data() + pos + 12 + length, 4);
    const uint32_t raw_data = crc32c(data);
    EXPECT_EQ(data_crc, ((raw_data >> 15) | (raw_data << 17)) + 0xa282ead8u);
    events.push_back(std::make_unique<UnknownFieldSet>());
    ASSERT_TRUE(events.back()->ParseFromString(data));
    pos += 12 + length + 4;
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(field(*events[0], 3)->length_delimited(), "brain.Event:2");
  EXPECT_EQ(field(*events[0], 1)->type(), UnknownField::TYPE_FIXED64);  // wall_time
  const double tags_values[2] = {2.5, 3.25};
  const int64_t steps[2] = {7, 10};
  const char* tags[2] = {"describe/loss", "describe/validation_loss"};
  for (int i = 0; i < 2; ++i) {
    const UnknownFieldSet& e = *events[static_cast<size_t>(i) + 1];
    EXPECT_EQ(static_cast<int64_t>(field(e, 2)->varint()), steps[i]);
    UnknownFieldSet summary, value;
    ASSERT_TRUE(summary.ParseFromString(field(e, 5)->length_delimited()));
    ASSERT_TRUE(value.ParseFromString(field(summary, 1)->length_delimited()));
    EXPECT_EQ(field(value, 1)->length_delimited(), tags[i]);
    const uint32_t bits = field(value, 2)->fixed32();
    float f = 0;
    std::memcpy(&f, &bits, 4);
    EXPECT_EQ(f, static_cast<float>(tags_values[i]));
  }
}

}  // namespace
}  // namespace vitrine::training
