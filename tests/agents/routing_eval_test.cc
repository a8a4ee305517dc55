// The router on hand-written texts about the sample's products, routed by
// the classifier agent with the classifier `vitrine train` trains
// (sample_run.h):
//   tests/data/routing_eval.jsonl    381 texts written before the router was
//                                    built, used while tuning it;
//   tests/data/routing_unseen.jsonl  written after tuning ended, never used
//                                    to tune anything.
// Each line: text, route (describe or qa), kind (question, casual_question,
// imperative, portuguese, about_question_title, title, question_title,
// noisy_title, unknown_product), lang, uid (the product, null for none).
// Accuracy is printed per kind, per language and per the product's split
// (a test-split product's title was never a training text), with every miss.
// Neither file is read by the training code; a test checks that no question
// of theirs is a training text. Skips when the sample is absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "agents/classifier_agent.h"
#include "sample_run.h"

namespace vitrine::agents {
namespace {

namespace fs = std::filesystem;

struct EvalText {
  std::string text, route, kind, lang, uid;
};

std::vector<EvalText> read_eval(const std::string& name) {
  const fs::path path = fs::path(VITRINE_TEST_DATA_DIR) / name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::vector<EvalText> out;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const std::string route = j.at("route");
    if (route != "describe" && route != "qa") {
      throw std::runtime_error(path.string() + " line " + std::to_string(n) + ": route '" + route +
                               "' is neither describe nor qa");
    }
    out.push_back({j.at("text"), route, j.at("kind"), j.at("lang"),
                   j.at("uid").is_null() ? "" : j.at("uid").get<std::string>()});
  }
  return out;
}

// Lowercase, words separated by one space, no punctuation: "the same text"
// however it was typed.
std::string normalised(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || u >= 0x80) {
      out += static_cast<char>(std::tolower(u));
    } else if (!out.empty() && out.back() != ' ') {
      out += ' ';
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

class RoutingEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ = testing::sample_run();
    if (!run_) GTEST_SKIP() << testing::no_sample_message();
    catalog_ = std::make_shared<const Catalog>(run_->dataset / "catalog.sqlite");
    agent_ =
        std::make_unique<ClassifierAgent>(models::load_text_classifier(run_->classifier), catalog_);
  }

  // Accuracy over `texts`, printed per kind, language and product split,
  // with the misses: the route taken, why, and the classifier's confidence.
  double accuracy(const std::vector<EvalText>& texts, const std::string& name) {
    std::map<std::string, std::pair<int, int>> by_kind, by_lang, by_split;  // right, total
    int right = 0;
    for (const EvalText& t : texts) {
      const Route route = agent_->decide(t.text);
      const bool ok = task_name(route.task) == t.route;
      right += ok;
      std::string split = "none";
      if (!t.uid.empty()) {
        const auto product = catalog_->get(t.uid);
        if (!product) throw std::runtime_error(name + ": uid " + t.uid + " is not in the sample");
        split = product->split;
      }
      for (auto* tally : {&by_kind[t.kind], &by_lang[t.lang], &by_split[split]}) {
        tally->first += ok;
        ++tally->second;
      }
      if (!ok) {
        std::cout << "  miss [" << t.kind << "] \"" << t.text << "\" -> " << task_name(route.task)
                  << " (" << evidence_name(route.evidence) << ", " << route.confidence << ")\n";
      }
    }
    const double overall = static_cast<double>(right) / static_cast<double>(texts.size());
    std::cout << name << ": " << right << "/" << texts.size() << " = " << 100 * overall << " %\n";
    for (const auto& [label, groups] : {std::pair{"kind", &by_kind}, std::pair{"lang", &by_lang},
                                        std::pair{"product split", &by_split}}) {
      for (const auto& [key, tally] : *groups) {
        std::cout << "  " << label << " " << key << ": " << tally.first << "/" << tally.second
                  << " = " << 100.0 * tally.first / tally.second << " %\n";
      }
    }
    return overall;
  }

  // How the classifier alone routes `texts` from their words, as it routes
  // products the catalogue lacks: no catalogue rule, no evidence. Printed,
  // not asserted: the catalogue is part of the router.
  void print_without_catalogue(const std::vector<EvalText>& texts, const std::string& name) {
    models::TextClassifier model = models::load_text_classifier(run_->classifier);
    int right = 0;
    for (const EvalText& t : texts) right += models::classify(*model, t.text).label == t.route;
    std::cout << name << " without the catalogue (the classifier on the words alone): " << right
              << "/" << texts.size() << " = " << 100.0 * right / texts.size() << " %\n";
  }

  const testing::SampleRun* run_ = nullptr;
  std::shared_ptr<const Catalog> catalog_;
  std::unique_ptr<ClassifierAgent> agent_;
};

TEST_F(RoutingEvalTest, RoutesTheHandWrittenSet) {
  const training::ClassifierReport& r = run_->report;
  std::cout << "classifier: " << r.train_examples << " training texts (" << r.generated_examples
            << " generated), router test split " << 100 * r.test_accuracy << " % of "
            << r.test_examples << ", texts generated from its titles "
            << 100 * r.generated_test_accuracy << " % of " << r.generated_test_examples << "\n";
  const auto texts = read_eval("routing_eval.jsonl");
  ASSERT_GE(texts.size(), 300u);
  EXPECT_GE(accuracy(texts, "routing_eval.jsonl"), 0.98);
  print_without_catalogue(texts, "routing_eval.jsonl");
}

TEST_F(RoutingEvalTest, RoutesTheSetWrittenAfterTuning) {
  const auto texts = read_eval("routing_unseen.jsonl");
  ASSERT_GE(texts.size(), 50u);
  EXPECT_GE(accuracy(texts, "routing_unseen.jsonl"), 0.98);
  print_without_catalogue(texts, "routing_unseen.jsonl");
}

// The evaluation sets stay out of training: no question of theirs is a
// text the classifier learnt from, however cased or punctuated. Titles are
// another matter: a catalogue title (exact, or lowercased by the dataset's
// or the generator's noise) is a training text by design; those are counted.
TEST_F(RoutingEvalTest, NoEvaluationQuestionIsATrainingText) {
  const training::TrainConfig config = training::default_train_config();
  std::set<std::string> trained;
  for (const auto& e :
       training::classifier_training_texts(run_->dataset, config.classifier, config.seed)) {
    trained.insert(normalised(e.text));
  }
  for (const char* name : {"routing_eval.jsonl", "routing_unseen.jsonl"}) {
    int titles_seen = 0, describe = 0;
    for (const EvalText& t : read_eval(name)) {
      const bool seen = trained.count(normalised(t.text)) > 0;
      if (t.route == "qa") {
        EXPECT_FALSE(seen) << name << ": \"" << t.text << "\" is a training text";
      } else {
        ++describe;
        titles_seen += seen;
      }
    }
    std::cout << name << ": " << titles_seen << " of " << describe
              << " titles are training texts as typed (titles are what describe learns)\n";
  }
}

}  // namespace
}  // namespace vitrine::agents
