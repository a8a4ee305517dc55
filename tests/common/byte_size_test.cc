// Sizes as people write them, and as transformers' max_shard_size reads them.
#include "common/byte_size.h"

#include <gtest/gtest.h>

#include "tests/support/expect_error.h"

namespace vitrine {
namespace {

TEST(ByteSize, ReadsBytesAndDecimalAndBinaryUnits) {
  EXPECT_EQ(parse_byte_size("123456"), 123456);
  EXPECT_EQ(parse_byte_size("500B"), 500);
  EXPECT_EQ(parse_byte_size("300KB"), 300'000);
  EXPECT_EQ(parse_byte_size("500MB"), 500'000'000);
  EXPECT_EQ(parse_byte_size("2GB"), 2'000'000'000);
  EXPECT_EQ(parse_byte_size("5GB"), 5'000'000'000);
  EXPECT_EQ(parse_byte_size("1TB"), 1'000'000'000'000);
  EXPECT_EQ(parse_byte_size("1KiB"), 1024);
  EXPECT_EQ(parse_byte_size("3MiB"), 3 << 20);
  EXPECT_EQ(parse_byte_size("1GiB"), int64_t{1} << 30);
  EXPECT_EQ(parse_byte_size("1gib"), int64_t{1} << 30);  // transformers upper-cases the unit
  EXPECT_EQ(parse_byte_size("2 GB"), 2'000'000'000);
  EXPECT_EQ(parse_byte_size(" 7kB "), 7000);
}

TEST(ByteSize, RefusesWhatItWouldHaveToGuess) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "does not start with a number"},
      {"GB", "does not start with a number"},
      {"1.5GB", "has a fraction"},
      {"5Gb", "ends in a lowercase b"},  // bits in transformers
      {"500mb", "ends in a lowercase b"},
      {"5XB", "has an unknown unit 'XB'"},
      {"5 GB extra", "has an unknown unit 'GB extra'"},
      {"0", "is not positive"},
      {"-5MB", "is not positive"},
      {"99999999999999999999", "is too large"},
      {"9000000000TB", "is too large"},
  };
  for (const auto& [text, why] : cases) {
    SCOPED_TRACE(text);
    testing::expect_throw_naming<std::invalid_argument>([&] { parse_byte_size(text); },
                                                        "size '" + text + "' " + why);
  }
}

}  // namespace
}  // namespace vitrine
