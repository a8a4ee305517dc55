// gateway/stop_sequences.h against a reference: streaming any text in any
// split through StopCutter sends exactly what cut_at_stop leaves of the
// whole text, and nothing of a stop sequence ever leaves early.
#include "gateway/stop_sequences.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace vitrine::gateway {
namespace {

// What the cutter sends when `text` arrives in pieces ending at `cuts`.
std::string streamed(const std::string& text, const std::vector<size_t>& cuts,
                     const std::vector<std::string>& stops, bool& stopped) {
  StopCutter cutter(stops);
  std::string out;
  size_t from = 0;
  for (size_t cut : cuts) {
    out += cutter.push(std::string_view(text).substr(from, cut - from));
    from = cut;
  }
  out += cutter.push(std::string_view(text).substr(from));
  stopped = cutter.stopped();
  if (!stopped) out += cutter.finish();
  return out;
}

TEST(GatewayStopSequences, WholeTextIsCutBeforeTheFirstStop) {
  std::string text = "one. two. END three END";
  EXPECT_TRUE(cut_at_stop(text, {"END", "two"}));
  EXPECT_EQ(text, "one. ");
  // The stop completed first wins, as when checking after every token:
  // "b" is complete before "a.b!" is.
  text = "xa.b!";
  EXPECT_TRUE(cut_at_stop(text, {"a.b!", "b"}));
  EXPECT_EQ(text, "xa.");
  text = "xab";
  EXPECT_TRUE(cut_at_stop(text, {"b", "ab"}));  // completed together: the longer
  EXPECT_EQ(text, "x");
  text = "nothing here";
  EXPECT_FALSE(cut_at_stop(text, {"END"}));
  EXPECT_EQ(text, "nothing here");
  EXPECT_FALSE(cut_at_stop(text, {}));
}

TEST(GatewayStopSequences, AStopSplitAcrossPiecesIsHeldBackAndNeverSent) {
  StopCutter cutter({"\n\nUser:"});
  EXPECT_EQ(cutter.push("Hello"), "Hello");
  EXPECT_EQ(cutter.push(" there\n"), " there");  // "\n" may begin the stop
  EXPECT_EQ(cutter.push("\nUs"), "");
  EXPECT_EQ(cutter.push("er: more"), "");
  EXPECT_TRUE(cutter.stopped());
  EXPECT_EQ(cutter.push("anything"), "");

  StopCutter false_alarm({"\n\nUser:"});
  EXPECT_EQ(false_alarm.push("a\n\nUs"), "a");
  EXPECT_EQ(false_alarm.push("ually"), "\n\nUsually");
  EXPECT_EQ(false_alarm.push("\n"), "");
  EXPECT_FALSE(false_alarm.stopped());
  EXPECT_EQ(false_alarm.finish(), "\n");
}

TEST(GatewayStopSequences, AnySplitSendsWhatTheWholeCutLeaves) {
  std::mt19937 rng(20240611);
  const std::string alphabet = "ab\n\xc3\xa9.";  // with a two-byte character
  const std::vector<std::vector<std::string>> stop_sets = {
      {"ab"}, {"\n\n", "b."}, {"aab", "ba", "\xc3\xa9\xc3\xa9"}, {"a.b\n", "xyz", "b", "\n"}};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const size_t n = rng() % 24;
    for (size_t i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    std::vector<size_t> cuts;
    for (size_t at = 0; at < text.size(); at += 1 + rng() % 4) cuts.push_back(at);
    const std::vector<std::string>& stops = stop_sets[round % stop_sets.size()];
    std::string expected = text;
    const bool expect_stop = cut_at_stop(expected, stops);
    bool stopped = false;
    EXPECT_EQ(streamed(text, cuts, stops, stopped), expected) << "text: " << text;
    EXPECT_EQ(stopped, expect_stop) << "text: " << text;
  }
}

TEST(GatewayStopSequences, ACharacterSplitAcrossPiecesWaitsForItsLastByte) {
  // é is c3 a9, € e2 82 ac, 😀 f0 9f 98 80.
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("a\xc3\xa9"), 3u);
  EXPECT_EQ(complete_utf8_prefix("a\xc3"), 1u);
  EXPECT_EQ(complete_utf8_prefix("a\xe2\x82"), 1u);
  EXPECT_EQ(complete_utf8_prefix("a\xf0\x9f\x98"), 1u);
  EXPECT_EQ(complete_utf8_prefix("a\xf0\x9f\x98\x80"), 5u);
  EXPECT_EQ(complete_utf8_prefix(""), 0u);
}

}  // namespace
}  // namespace vitrine::gateway
