// ROUGE and BLEU against values worked out by hand from the definitions
// rouge_score and sacreBLEU implement.
#include "training/text_metrics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace vitrine::training {
namespace {

using Tokens = std::vector<std::string>;

TEST(Rouge, TokensAreLowercaseAlphanumericRuns) {
  EXPECT_EQ(rouge_tokens("The cat's HAT, 2-pack!"),
            (Tokens{"the", "cat", "s", "hat", "2", "pack"}));
  EXPECT_EQ(rouge_tokens("Café"), (Tokens{"caf"}));  // rouge_score drops non-ASCII letters
}

TEST(Rouge, UnigramBigramAndLcsF1) {
  const RougeScores s = rouge("the cat sat on the mat", "The cat on the mat.");
  EXPECT_NEAR(s.rouge1, 10.0 / 11.0, 1e-12);            // 5 matches: P 1, R 5/6
  EXPECT_NEAR(s.rouge2, 2 * 0.75 * 0.6 / 1.35, 1e-12);  // 3 of 4 and 3 of 5 bigrams
  EXPECT_NEAR(s.rougeL, 10.0 / 11.0, 1e-12);            // LCS "the cat on the mat"
  const RougeScores none = rouge("alpha beta", "gamma");
  EXPECT_EQ(none.rouge1, 0);
  EXPECT_EQ(rouge("", "anything").rougeL, 0);
}

TEST(Bleu, ThirteenATokenisation) {
  EXPECT_EQ(
      bleu_13a_tokens("Hello, world. It costs $3.50 (approx)!"),
      (Tokens{"Hello", ",", "world", ".", "It", "costs", "$", "3.50", "(", "approx", ")", "!"}));
  EXPECT_EQ(bleu_13a_tokens("a 5-year e-mail, don't &amp; 1,000"),
            (Tokens{"a", "5", "-", "year", "e-mail", ",", "don't", "&", "1,000"}));
}

TEST(Bleu, CorpusScoreWithSmoothingAndBrevity) {
  EXPECT_NEAR(corpus_bleu({"the cat sat on the mat"}, {"the cat sat on a mat"}).score,
              100 * std::pow(1.0 / 12.0, 0.25), 1e-9);  // 5/6, 3/5, 2/4, 1/3
  // No matching 4-gram: sacreBLEU's exponential smoothing gives it 100 / (2 * 1).
  const BleuScore smoothed = corpus_bleu({"a b c d"}, {"a b c e"});
  EXPECT_NEAR(smoothed.precisions[3], 50.0, 1e-12);
  EXPECT_NEAR(smoothed.score, 100 * std::pow(0.75 * (2.0 / 3.0) * 0.5 * 0.5, 0.25), 1e-9);
  // Short hypotheses pay the brevity penalty on the corpus totals.
  const BleuScore brief = corpus_bleu({"a b c d"}, {"a b c d e f"});
  EXPECT_NEAR(brief.brevity_penalty, std::exp(-0.5), 1e-12);
  EXPECT_NEAR(brief.score, 100 * std::exp(-0.5), 1e-9);
  // Counts are summed over the corpus, not averaged per sentence.
  const BleuScore corpus =
      corpus_bleu({"the cat sat on the mat", "a b c d"}, {"the cat sat on a mat", "a b c d"});
  EXPECT_NEAR(corpus.precisions[0], 100.0 * 9 / 10, 1e-12);
  EXPECT_EQ(corpus_bleu({""}, {"x"}).score, 0);
  EXPECT_THROW(corpus_bleu({"a"}, {}), std::invalid_argument);
}

// Faithfulness on hand-made strings: the share of an answer's content
// words (stopwords and the answer lead-ins left out) found among the
// description's words.
TEST(Faithfulness, ContentWordsLeaveOutStopwordsInBothLanguages) {
  EXPECT_EQ(content_words("The kettle boils WATER in 3 minutes."),
            (std::vector<std::string>{"kettle", "boils", "water", "3", "minutes"}));
  EXPECT_EQ(content_words("Segundo a descrição: é uma chaleira de aço."),
            (std::vector<std::string>{"chaleira", "aço"}));
  EXPECT_EQ(content_words("The description says: it is what it is."), std::vector<std::string>{});
}

TEST(Faithfulness, ShareOfContentWordsFoundInTheDescription) {
  const std::string description = "Boils water in three minutes. Automatic shut-off. 1500 watts.";
  // Every content word is in the description (case and punctuation aside).
  EXPECT_DOUBLE_EQ(*faithfulness("The description says: it boils water, 1500 WATTS.", description),
                   1.0);
  // kettle, boils, water, seconds: boils and water are found.
  EXPECT_DOUBLE_EQ(*faithfulness("A kettle that boils water in seconds.", description), 0.5);
  // Repeats count: "purple purple purple boils" -> 1 of 4.
  EXPECT_DOUBLE_EQ(*faithfulness("purple purple purple boils", description), 0.25);
  EXPECT_DOUBLE_EQ(*faithfulness("Once upon a time, a dragon.", description), 0.0);
  // An answer with no content word has no figure; nor does an empty one.
  EXPECT_FALSE(faithfulness("It is what it is.", description).has_value());
  EXPECT_FALSE(faithfulness("", description).has_value());
  // Portuguese: accented words are whole words.
  EXPECT_DOUBLE_EQ(*faithfulness("Segundo a descrição: chaleira de aço.", "Chaleira de aço inox."),
                   1.0);
}

}  // namespace
}  // namespace vitrine::training
