#include "dataset/language.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace vitrine::dataset {
namespace {

TEST(Language, DetectsEachLanguage) {
  EXPECT_EQ(detect_language("The Prophet",
                            "In a distant, timeless place, a mysterious prophet walks the sands."),
            "en");
  EXPECT_EQ(detect_language(
                "O Alquimista",
                "Um romance sobre um jovem pastor que viaja em busca de um tesouro e não desiste."),
            "pt");
  EXPECT_EQ(detect_language("Cien años de soledad",
                            "La historia de la familia Buendía y del pueblo de Macondo, con sus "
                            "guerras y sus amores."),
            "es");
  EXPECT_EQ(
      detect_language(
          "Le Petit Prince",
          "Un aviateur rencontre dans le désert un petit prince qui vient d'une autre planète."),
      "fr");
  EXPECT_EQ(
      detect_language(
          "Der Steppenwolf",
          "Die Geschichte eines Mannes, der sich nicht in die Welt der Bürger einfügen kann."),
      "de");
  EXPECT_EQ(detect_language("Il nome della rosa",
                            "Un giallo storico ambientato in un'abbazia del Trecento, con delitti "
                            "e indagini che sono famose."),
            "it");
}

TEST(Language, UnknownWhenTooShortOrNoClearWinner) {
  EXPECT_EQ(detect_language("Tutu", ""), "unknown");                      // one word
  EXPECT_EQ(detect_language("Adult Ballet Tutu Yellow", ""), "unknown");  // no stop word
  EXPECT_EQ(detect_language("Perfectly Correct", "'Philippa Gregory reigns supreme' Today"),
            "unknown");
  EXPECT_EQ(detect_language("", "de la de la"), "unknown");  // es, fr tie
  EXPECT_EQ(detect_language("", ""), "unknown");
}

TEST(Language, CaseInsensitiveAndTitleCounts) {
  EXPECT_EQ(detect_language("THE HISTORY OF THE WORLD AND ITS PEOPLE", ""), "en");
}

TEST(Language, ScansOnlyTheFirstWords) {
  // Sixty English words, then a long Portuguese tail that is never read.
  std::string content;
  for (int i = 0; i < kMaxWordsScanned / 4; ++i) content += "the cat and dog ";
  for (int i = 0; i < 200; ++i) content += "o que é isso não ";
  EXPECT_EQ(detect_language("", content), "en");
}

TEST(Language, SampleIsMostlyEnglish) {
  const std::filesystem::path path =
      std::filesystem::path(VITRINE_SHARED_DIR) / "data/amazon_titles_sample.jsonl";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << "sample data not found at " << path << " (set VITRINE_SHARED_DIR)";
  std::map<std::string, int> counts;
  int total = 0;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    ++counts[std::string(
        detect_language(j.at("title").get<std::string>(), j.at("content").get<std::string>()))];
    ++total;
  }
  EXPECT_GT(counts["en"], total * 9 / 10);
  EXPECT_EQ(counts["pt"], 0);
  for (const auto& [lang, n] : counts) {
    EXPECT_TRUE(lang == "en" || lang == "pt" || lang == "es" || lang == "fr" || lang == "de" ||
                lang == "it" || lang == "unknown")
        << lang;
  }
}

}  // namespace
}  // namespace vitrine::dataset
