// Where a catalogue title sits in a user's text: the word alignment
// (title_alignment.h) and Catalog::find_title_in_text on hand-made products.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "catalog/title_alignment.h"

namespace vitrine::catalog {
namespace {

namespace fs = std::filesystem;

// Words as the index folds them; "*" marks a stop word.
std::vector<AlignWord> words(std::initializer_list<std::string_view> list) {
  std::vector<AlignWord> out;
  for (std::string_view w : list) {
    const bool stop = w.size() > 1 && w.back() == '*';
    if (stop) w.remove_suffix(1);
    out.push_back({std::string(w), stop});
  }
  return out;
}

TEST(TitleAlignment, FindsTheTitleInsideAQuestion) {
  const auto title = words({"the*", "mauritius", "command"});
  const TitleAlignment a =
      align_title(words({"who*", "wrote", "the*", "mauritius", "command"}), title);
  EXPECT_EQ(a.text_begin, 2);
  EXPECT_EQ(a.text_end, 5);
  EXPECT_EQ(a.title_begin, 0);
  EXPECT_EQ(a.title_end, 3);
  EXPECT_EQ(a.matched, 3);
  EXPECT_EQ(a.matched_content, 2);
  EXPECT_EQ(a.typos, 0);
}

TEST(TitleAlignment, ToleratesTyposDroppedWordsAndJoinedApostrophes) {
  // "the mauritius comand": one letter missing.
  TitleAlignment a =
      align_title(words({"the*", "mauritius", "comand"}), words({"the*", "mauritius", "command"}));
  EXPECT_EQ(a.text_end - a.text_begin, 3);
  EXPECT_EQ(a.matched_content, 2);
  EXPECT_EQ(a.typos, 1);
  // "lord of rings": small words dropped.
  a = align_title(words({"lord", "rings"}), words({"the*", "lord", "of*", "the*", "rings"}));
  EXPECT_EQ(a.text_begin, 0);
  EXPECT_EQ(a.text_end, 2);
  EXPECT_EQ(a.title_begin, 1);
  EXPECT_EQ(a.matched_content, 2);
  // "mogs kittens" for the index's "mog" "s" "kittens".
  a = align_title(words({"does*", "mogs", "kittens", "have*", "flaps"}),
                  words({"mog", "s*", "kittens"}));
  EXPECT_EQ(a.text_begin, 1);
  EXPECT_EQ(a.text_end, 3);
  EXPECT_EQ(a.matched_content, 2);
  EXPECT_EQ(a.typos, 0);
}

TEST(TitleAlignment, NeitherNumbersNorShortWordsAreTypos) {
  EXPECT_TRUE(is_typo_of("afriad", "afraid"));  // swapped letters
  EXPECT_TRUE(is_typo_of("billionare", "billionaire"));
  EXPECT_TRUE(is_typo_of("beginers", "beginners"));
  EXPECT_FALSE(is_typo_of("1990", "1991"));  // another product
  EXPECT_FALSE(is_typo_of("cat", "car"));
  EXPECT_FALSE(is_typo_of("yoga", "yoga"));         // equal is not a typo
  EXPECT_FALSE(is_typo_of("midnite", "midnight"));  // three edits
  const TitleAlignment a = align_title(words({"best", "american", "poetry", "1990"}),
                                       words({"the*", "best", "american", "poetry", "1991"}));
  EXPECT_EQ(a.matched_content, 3);
  EXPECT_EQ(a.text_end, 3);  // the year is not the title's
}

TEST(TitleAlignment, StopWordsAloneAlignNothingWorthKeeping) {
  const TitleAlignment a = align_title(words({"what*", "is*", "the*", "weather"}),
                                       words({"the*", "way*", "of*", "nowhere"}));
  EXPECT_EQ(a.matched_content, 0);
  EXPECT_EQ(align_title({}, words({"dune"})).score, 0);
  EXPECT_EQ(align_title(words({"dune"}), {}).score, 0);
}

class TitleInTextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() / ("vitrine_title_in_text_" + std::to_string(::getpid()) +
                                        "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    CatalogWriter writer(dir_ / "catalog.sqlite");
    const std::vector<std::pair<std::string, std::string>> products = {
        {"A1", "The Mauritius Command"},
        {"A2", "Where Have All the Boys Gone?"},
        {"A3", "City of Djinns: A Year in Delhi"},
        {"A4", "Mog's Kittens"},
        {"A5", "Light on Yoga"},
        {"A6", "Ratburger"}};
    for (const auto& [uid, title] : products) {
      writer.add(Product{uid, title, "A description long enough.", Split::kTrain, "en", 1});
    }
    writer.finish();
    catalog_ = std::make_unique<Catalog>(dir_ / "catalog.sqlite");
  }
  void TearDown() override {
    catalog_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  // The text's bytes find_title_in_text says are the title.
  static std::string span(const std::string& text, const TitleInText& t) {
    return text.substr(t.byte_begin, t.byte_end - t.byte_begin);
  }

  fs::path dir_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(TitleInTextTest, SaysWhereTheTitleIsAndWhatIsAroundIt) {
  const std::string text = "Who wrote The Mauritius Command?";
  const auto t = catalog_->find_title_in_text(text);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->uid, "A1");
  EXPECT_EQ(span(text, *t), "The Mauritius Command");
  EXPECT_EQ(t->text_words, 5);
  EXPECT_EQ(t->words_before, 2);
  EXPECT_EQ(t->words_after, 0);
  EXPECT_EQ(t->matched_words, 2);
  EXPECT_EQ(t->title_words, 2);
  EXPECT_DOUBLE_EQ(t->coverage, 1.0);
  EXPECT_TRUE(t->from_start);
  EXPECT_GT(t->search_score, 0.6);

  const std::string fronted = "does mogs kittens have flaps";
  const auto m = catalog_->find_title_in_text(fronted);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->uid, "A4");
  EXPECT_EQ(span(fronted, *m), "mogs kittens");
  EXPECT_EQ(m->words_before, 1);
  EXPECT_EQ(m->words_after, 2);
}

TEST_F(TitleInTextTest, AMainTitleCoversItsTitleAndATitlesQuestionMarkIsItsOwn) {
  const auto city = catalog_->find_title_in_text("city of djinns");
  ASSERT_TRUE(city.has_value());
  EXPECT_EQ(city->uid, "A3");
  EXPECT_DOUBLE_EQ(city->coverage, 1.0);  // all of "City of Djinns", before the ':'
  EXPECT_EQ(city->title_words, 2);

  // The title's own '?' goes with it; a user's '?' after a title without
  // one stays outside.
  const std::string boys = "where have all the boys gone?";
  const auto b = catalog_->find_title_in_text(boys);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(span(boys, *b), boys);
  const std::string yoga = "is it light on yoga?";
  const auto y = catalog_->find_title_in_text(yoga);
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ(span(yoga, *y), "light on yoga");
}

TEST_F(TitleInTextTest, TyposAndUnrelatedTextAreToldApart) {
  const auto typo = catalog_->find_title_in_text("the mauritius comand");
  ASSERT_TRUE(typo.has_value());
  EXPECT_EQ(typo->uid, "A1");
  EXPECT_EQ(typo->typos, 1);
  EXPECT_EQ(typo->words_before + typo->words_after, 0);
  for (const char* text : {"", "what is the weather like", "zq-9000 hyperdrive battery", "\xFF"}) {
    EXPECT_FALSE(catalog_->find_title_in_text(text).has_value()) << text;
  }
}

}  // namespace
}  // namespace vitrine::catalog
