#include "common/json_escape.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace vitrine {
namespace {

TEST(JsonEscape, RoundTripsThroughAJsonParser) {
  const std::string cases[] = {"plain",
                               "quote \" and backslash \\",
                               "tab\tnew\nline\r",
                               std::string("nul\0x", 5),
                               "\x01\x1f control",
                               "caf\xC3\xA9 \xE2\x80\x99",
                               "/slash/"};
  for (const auto& text : cases) {
    std::string out;
    append_json_string(out, text);
    EXPECT_EQ(nlohmann::json::parse(out).get<std::string>(), text) << out;
  }
}

TEST(JsonEscape, WritesUtf8AndShortEscapes) {
  std::string out = "x";
  append_json_string(out, "a\"\n\xC3\xA9\x02");
  EXPECT_EQ(out, "x\"a\\\"\\n\xC3\xA9\\u0002\"");
}

}  // namespace
}  // namespace vitrine
