#include "dataset/sentences.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vitrine::dataset {
namespace {

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view s : split_sentences(text)) out.emplace_back(s);
  return out;
}

using Pieces = std::vector<std::string>;

TEST(Sentence, SplitsOnTerminalPunctuationBeforeCapitalOrDigit) {
  EXPECT_EQ(split("High quality 3 layer ballet tutu. 12 inches in length"),
            (Pieces{"High quality 3 layer ballet tutu.", "12 inches in length"}));
  EXPECT_EQ(split("Is it good? Yes! It is."), (Pieces{"Is it good?", "Yes!", "It is."}));
  EXPECT_EQ(split("Wait... What now?! Nothing."), (Pieces{"Wait...", "What now?!", "Nothing."}));
}

TEST(Sentence, DoesNotSplitBeforeLowercaseOrWithoutSpace) {
  EXPECT_EQ(split("Version 2.5 is out. and more"), (Pieces{"Version 2.5 is out. and more"}));
  EXPECT_EQ(split("Startlingly good...tense...ingenious"),
            (Pieces{"Startlingly good...tense...ingenious"}));
  EXPECT_EQ(split("Visit example.com Today"), (Pieces{"Visit example.com Today"}));
}

TEST(Sentence, KeepsClosingQuotesAndSplitsBeforeOpeningOnes) {
  EXPECT_EQ(split("\"A great read.\" The Times"), (Pieces{"\"A great read.\"", "The Times"}));
  EXPECT_EQ(split("It was fun!\xE2\x80\x9D \xE2\x80\x9CSo fun.\xE2\x80\x9D"),
            (Pieces{"It was fun!\xE2\x80\x9D", "\xE2\x80\x9CSo fun.\xE2\x80\x9D"}));
  EXPECT_EQ(split("Great stories. (Ages 4 to 8)"), (Pieces{"Great stories.", "(Ages 4 to 8)"}));
}

TEST(Sentence, SkipsAbbreviations) {
  EXPECT_EQ(split("Mr. Smith met Dr. Jones on St. Mark's Place. They talked."),
            (Pieces{"Mr. Smith met Dr. Jones on St. Mark's Place.", "They talked."}));
  EXPECT_EQ(split("Kramer vs. Kramer is a film. Tools, e.g. Hammers, i.e. Things."),
            (Pieces{"Kramer vs. Kramer is a film.", "Tools, e.g. Hammers, i.e. Things."}));
  EXPECT_EQ(split("Made in the U.S. Sold everywhere."),
            (Pieces{"Made in the U.S. Sold everywhere."}));
  EXPECT_EQ(split("See Vol. 3 and No. 5 of the series. Gr. 3-7. Done."),
            (Pieces{"See Vol. 3 and No. 5 of the series.", "Gr. 3-7.", "Done."}));
}

TEST(Sentence, NoIsASentenceEndBeforeAWord) {
  EXPECT_EQ(split("The answer was No. Then we left."),
            (Pieces{"The answer was No.", "Then we left."}));
}

TEST(Sentence, SkipsInitials) {
  EXPECT_EQ(split("A novel by J. K. Rowling. Read it."),
            (Pieces{"A novel by J. K. Rowling.", "Read it."}));
  EXPECT_EQ(split("By George R.R. Martin. Epic."), (Pieces{"By George R.R. Martin.", "Epic."}));
}

TEST(Sentence, TrimsAndHandlesEmptyInput) {
  EXPECT_TRUE(split("").empty());
  EXPECT_TRUE(split("   ").empty());
  EXPECT_EQ(split("  One.  Two.  "), (Pieces{"One.", "Two."}));
  EXPECT_EQ(split("No terminal punctuation"), (Pieces{"No terminal punctuation"}));
}

TEST(Sentence, ViewsPointIntoTheInputAndReuseTheVector) {
  const std::string text = "First one. Second one.";
  std::vector<std::string_view> out = {"stale"};
  split_sentences(text, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].data(), text.data());
  EXPECT_EQ(out[1].data(), text.data() + 11);
}

TEST(Sentence, AbbreviationRule) {
  EXPECT_TRUE(is_abbreviation("Mr", 'S'));
  EXPECT_TRUE(is_abbreviation("J", 'K'));
  EXPECT_TRUE(is_abbreviation("U.S", 'S'));
  EXPECT_TRUE(is_abbreviation("(e.g", 'T'));
  EXPECT_TRUE(is_abbreviation("No", '5'));
  EXPECT_FALSE(is_abbreviation("No", 'T'));
  EXPECT_FALSE(is_abbreviation("etc", 'T'));
  EXPECT_FALSE(is_abbreviation("tutu", '1'));
  EXPECT_FALSE(is_abbreviation("", 'A'));
}

bool has(std::string_view s, uint32_t cue) {
  return (sentence_cues(s) & cue) != 0;
}

TEST(Sentence, AudienceCues) {
  EXPECT_TRUE(has("Dance tutu for girls ages 2-8 years.", kCueAudience));
  EXPECT_TRUE(
      has("Ages 6 months\xE2\x80\x93"
          "2 years.",
          kCueAudience));
  EXPECT_TRUE(has("A delight for girls aged three to six.", kCueAudience));
  EXPECT_TRUE(has("Young readers will love it.", kCueAudience));
  EXPECT_TRUE(has("Perfect for young children and their parents.", kCueAudience));
  EXPECT_TRUE(has("An essential for anyone who spends time outdoors.", kCueAudience));
  EXPECT_TRUE(has("Fans of historical fiction will be thrilled.", kCueAudience));
  EXPECT_TRUE(has("Suitable for both the beginner and the expert.", kCueAudience));
  EXPECT_TRUE(has("Gr. 3-7.", kCueAudience));
  EXPECT_TRUE(has("For ages 8 and up.", kCueAudience));
  EXPECT_TRUE(has("Fun for the whole family.", kCueAudience));
  EXPECT_FALSE(has("Mog has entertained children for more than 30 years.", kCueAudience));
  EXPECT_FALSE(has("She wrote it for her children.", kCueAudience));
  EXPECT_FALSE(has("It's all in a day's work for the Baxter family.", kCueAudience));
  EXPECT_FALSE(has("He arrived at age 18 in 1978.", kCueAudience));
  EXPECT_FALSE(has("Cannot fail to move those who read it.", kCueAudience));
  EXPECT_FALSE(has("REVIEWS FOR BEAUTIFUL CHILD", kCueAudience));
  EXPECT_FALSE(has("It has been around for ages.", kCueAudience));
}

TEST(Sentence, DetailCues) {
  EXPECT_TRUE(has("High quality 3 layer ballet tutu.", kCueDetail));
  EXPECT_TRUE(has("The set includes a pen.", kCueDetail));
  EXPECT_TRUE(has("It is made of solid oak.", kCueDetail));
  EXPECT_TRUE(has("Contents: soups, stews, breads.", kCueDetail));
  EXPECT_FALSE(has("First published in 1940.", kCueDetail));
  EXPECT_FALSE(has("A lovely story about friendship.", kCueDetail));
}

TEST(Sentence, BiographyCues) {
  EXPECT_TRUE(has("Jill Barklem was born in Epping in 1951.", kCueBio));
  EXPECT_TRUE(has("Winston Graham is the author of forty novels.", kCueBio));
  EXPECT_TRUE(has("Casey Watson is a specialist foster carer.", kCueBio));
  EXPECT_TRUE(has("Ian V. Hogg has recently retired.", kCueBio));
  EXPECT_TRUE(has("She lives in Kent with her dog.", kCueBio));
  EXPECT_FALSE(has("Logan McRae is doing his best.", kCueBio));
  EXPECT_FALSE(has("The Prophet is a book of poetic essays.", kCueBio));
}

TEST(Sentence, BlurbAndWorkCues) {
  EXPECT_TRUE(has("'Breathless, bloody and detailed.' Daily Telegraph", kCueBlurb));
  EXPECT_TRUE(has("\xE2\x80\x9CHighly recommended.\xE2\x80\x9D --Library Journal", kCueBlurb));
  EXPECT_TRUE(has("I am totally charmed by the illustrations.", kCueBlurb));
  EXPECT_TRUE(has("Praise for the series: 'Superb'", kCueBlurb));
  EXPECT_FALSE(has("(Ages 4 to 8)", kCueBlurb));
  EXPECT_FALSE(has("World War I changed Europe.", kCueBlurb));
  EXPECT_TRUE(has("A gripping novel of the sea.", kCueWork));
  EXPECT_TRUE(has("Worship with Don Moen [VHS]", kCueWork));
  EXPECT_FALSE(has("Girls Ballet Tutu Neon Pink", kCueWork));
}

}  // namespace
}  // namespace vitrine::dataset
