// The unknown-product agent: the question's language, the fixed sentence,
// and the closest titles from the hand-made catalogue.
#include "agents/unknown_product_agent.h"

#include <gtest/gtest.h>

#include "agents/qa_agent.h"
#include "tests/agents/hand_catalog.h"

namespace vitrine::agents {
namespace {

using testing::HandCatalogTest;

TEST(QuestionLanguage, EnglishAndPortugueseQuestionsOfEveryLengthAreTold) {
  for (const char* en : {"What is the battery life of the zq-9000 hyperdrive?", "and who wrote it?",
                         "tell me about the nimbus 2000 broom", "does it have pictures",
                         "Is the e-book version any good?"}) {
    EXPECT_EQ(question_language(en), AnswerLanguage::kEnglish) << en;
  }
  for (const char* pt :
       {"Qual é a duração da bateria do zq-9000 hyperdrive?", "e quem escreveu?",
        "o fone bluetooth xyz tem cancelamento de ruído?", "QUEM ESCREVEU O LIVRO?",
        "É à prova d'água?", "Quanto custa a cafeteira Nespresso Inissia"}) {
    EXPECT_EQ(question_language(pt), AnswerLanguage::kPortuguese) << pt;
  }
  // No cue either way, or as many for each: English, the catalogue's language.
  for (const char* neither : {"zq-9000", "", "?!", "\xff\xfe", "Dune"}) {
    EXPECT_EQ(question_language(neither), AnswerLanguage::kEnglish) << neither;
  }
  EXPECT_EQ(language_code(AnswerLanguage::kEnglish), "en");
  EXPECT_EQ(language_code(AnswerLanguage::kPortuguese), "pt");
}

TEST(UnknownProductText, SaysSoAndNamesTheClosestTitlesInEitherLanguage) {
  const std::vector<Source> none, one = {{.uid = "1", .title = "Dune"}},
                                  three = {{.uid = "1", .title = "Dune"},
                                           {.uid = "2", .title = "Dune Messiah"},
                                           {.uid = "3", .title = "Children of Dune"}};
  const std::string en =
      "I don't know that product: nothing in the catalogue matches your question, so I won't "
      "make up an answer.";
  EXPECT_EQ(unknown_product_text(AnswerLanguage::kEnglish, none),
            en + " Ask me about a product by its title.");
  EXPECT_EQ(unknown_product_text(AnswerLanguage::kEnglish, one),
            en + " The closest title in the catalogue is \"Dune\".");
  EXPECT_EQ(unknown_product_text(AnswerLanguage::kEnglish, three),
            en + " The closest titles in the catalogue are \"Dune\", \"Dune Messiah\" and "
                 "\"Children of Dune\".");
  const std::string pt =
      "Não conheço esse produto: nada no catálogo corresponde à sua pergunta, por isso não vou "
      "inventar uma resposta.";
  EXPECT_EQ(unknown_product_text(AnswerLanguage::kPortuguese, none),
            pt + " Pergunte-me sobre um produto pelo seu título.");
  EXPECT_EQ(unknown_product_text(AnswerLanguage::kPortuguese, one),
            pt + " O título mais próximo no catálogo é \"Dune\".");
  EXPECT_EQ(unknown_product_text(AnswerLanguage::kPortuguese, three),
            pt + " Os títulos mais próximos no catálogo são \"Dune\", \"Dune Messiah\" e "
                 "\"Children of Dune\".");
}

TEST(UnknownProductText, ItsAnswersAreToldFromOtherText) {
  const std::vector<Source> one = {{.uid = "1", .title = "Dune"}};
  for (const AnswerLanguage l : {AnswerLanguage::kEnglish, AnswerLanguage::kPortuguese}) {
    EXPECT_TRUE(said_unknown_product(unknown_product_text(l, {})));
    EXPECT_TRUE(said_unknown_product(unknown_product_text(l, one)));
  }
  EXPECT_FALSE(said_unknown_product("I don't know that product"));
  EXPECT_FALSE(said_unknown_product("The closest title is \"Dune\"."));
  EXPECT_FALSE(said_unknown_product(""));
}

TEST(UnknownProductOption, NamesParseAndOthersAreRefused) {
  EXPECT_EQ(unknown_product_name(UnknownProduct::kSay), "say");
  EXPECT_EQ(unknown_product_name(UnknownProduct::kGenerate), "generate");
  EXPECT_EQ(parse_unknown_product("say"), UnknownProduct::kSay);
  EXPECT_EQ(parse_unknown_product("generate"), UnknownProduct::kGenerate);
  EXPECT_THROW(parse_unknown_product("refuse"), std::invalid_argument);
  EXPECT_EQ(UnknownProductOptions{}.answer, UnknownProduct::kSay);  // the shipped default
}

class UnknownProductAgentTest : public HandCatalogTest {};

TEST_F(UnknownProductAgentTest, TheClosestTitlesAreNearMissesBelowTheProductsBar) {
  const UnknownProductAgent agent(catalog_);
  // A kettle the catalogue does not have: its kettle is the nearest title,
  // not close enough to be the product the question is about.
  const std::string question = "Does the Zorblax 9000 travel kettle have a warranty?";
  const QaAgent qa(catalog_);
  ASSERT_FALSE(qa.prompt(question).product_known);
  const UnknownProductAnswer answer = agent.answer(question);
  ASSERT_FALSE(answer.closest.empty());
  EXPECT_LE(answer.closest.size(), 3u);
  EXPECT_EQ(answer.closest[0].uid, "B00KETTLE1");
  for (const Source& s : answer.closest) {
    EXPECT_GE(s.score, 0.25) << s.title;
    EXPECT_LT(s.score, 0.6) << s.title;  // below qa_min_score: not the product
    EXPECT_EQ(s.evidence, SourceEvidence::kText);
  }
  EXPECT_EQ(answer.language, AnswerLanguage::kEnglish);
  EXPECT_EQ(answer.text, unknown_product_text(AnswerLanguage::kEnglish, answer.closest));

  const UnknownProductAnswer pt = agent.answer("A chaleira Zorblax 9000 tem garantia?");
  EXPECT_EQ(pt.language, AnswerLanguage::kPortuguese);
  EXPECT_EQ(pt.text, unknown_product_text(AnswerLanguage::kPortuguese, pt.closest));

  // Words no title has: nothing to offer.
  EXPECT_TRUE(agent.closest("what is the weather like today?").empty());
  // max_closest and closest_min_score bound what is offered.
  EXPECT_TRUE(UnknownProductAgent(catalog_, {.max_closest = 0}).closest(question).empty());
  EXPECT_TRUE(UnknownProductAgent(catalog_, {.closest_min_score = 0.99}).closest(question).empty());
  EXPECT_THROW(UnknownProductAgent(nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace vitrine::agents
