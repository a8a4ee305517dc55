// Router training texts generated from catalogue titles, beyond the
// dataset's templated questions: each title asked about in many shapes
// (router_phrasings.h: question words, yes/no, requests, the title first,
// something inside it), in English and Portuguese, named by its full title,
// its main title, its first words or a lowercase form, with the noise users
// type (lowercase, no question mark, no apostrophes, Portuguese without
// accents, a typo, a greeting); and the title itself typed as users type
// titles (lowercase, main title, first words, no punctuation, a typo, a
// listing word such as "paperback") labelled describe.
//
// Each text says whether training should look it up in the catalogue: a
// share is learnt without catalogue evidence, as the router meets products
// the catalogue lacks. Titles that read as questions ("Why Am I Afraid to
// Tell You Who I Am?") are always looked up: without the catalogue they
// cannot be told from a question.
//
// Deterministic: the same titles, options and seed give the same texts, in
// order; each title's texts depend only on it and the seed. Not goals:
// grammatical questions for every product, reading the evaluation sets of
// tests/data (never read), other languages.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::training {

struct RouterExampleOptions {
  uint64_t seed = 1;              // draws phrasings, forms and noise; recorded with the model
  int questions_per_title = 6;    // qa texts per title: more = more shapes seen per product
  int titles_per_title = 3;       // noisy describe texts per title
  double portuguese_share = 0.4;  // of the questions
  double without_evidence_share = 0.25;  // texts learnt without catalogue evidence: more =
                                         // better on unknown products, less on known ones
  int64_t max_titles = 20000;            // titles used at most (picked by a hash of each title and
                                         // the seed): bounds the work on the full catalogue
};

struct RouterExample {
  std::string text;
  std::string label;     // "describe" or "qa"
  std::string kind;      // question, question_pt, request, request_pt, fronted, topic, noisy_title
  bool evidence = true;  // look it up in the catalogue when training
};

// Throws std::invalid_argument naming the option that cannot work.
void validate(const RouterExampleOptions& options);

std::vector<RouterExample> generate_router_examples(std::span<const std::string> titles,
                                                    const RouterExampleOptions& options);

// Whether a title reads as a question: it ends with '?' or opens with a
// question or request word ("Why Am I Afraid...", "How to Mind Map").
bool title_reads_as_question(std::string_view title);

}  // namespace vitrine::training
