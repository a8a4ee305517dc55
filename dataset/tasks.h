// Task examples built from one cleaned product, appended as JSONL lines:
//
//   describe  {"uid","prompt": title,"completion": description}
//   qa        {"uid","question","answer","kind","template","lang","sources":[uid]}
//   router    {"uid","text","label":"describe"|"qa","hard","kind"}
//
// QA questions come from fixed templates in English and Portuguese (see
// question_templates()), naming the product by its title or its main title.
// Answers are never invented: they are whole sentences of the description,
// verbatim (contiguous sentences keep their original span), optionally after
// a lead-in that adds no fact ("According to its description: "); the
// description stays in its own language. A kind is asked only when the
// description can answer it:
//   what_is   the first sentence (two when the first is under 80 code
//             points), when the description opens by describing (not with
//             an author biography or a quoted review)
//   about     the first 1-2 sentences (until 200 code points), as what_is,
//             and only for works (books, films, records: a work cue in the
//             title or description)
//   who_for   the first sentence naming an audience (for children, ages 3-5,
//             young readers, anyone who...), with the sentence before it
//             when it is very short
//   features  up to 3 sentences with concrete details (numbers, measures,
//             "includes", ':' lists), else the first sentences as what_is
//   tell_me   the first 1-3 sentences, whatever they are (a quoted review
//             always gets a lead-in, so it reads as the description's)
// Listing notes are never answers: "Text: English, French (translation)"
// sentences are dropped, Amazon's "--This text refers to ..." is cut off.
// Kinds are tried in the order of stable_hash64(uid + "#" + kind, seed); the
// other bits of that hash pick the language, template, title form, casual
// style and lead-in. Skipped kinds are counted by reason.
// Router examples: the title (label describe; flagged hard when it looks like
// a question, "Who Moved My Cheese?") and generated questions (label qa;
// hard when mostly the title or about a question-like title), some in
// lowercase or without '?', as users type; titles get the same casing noise
// so that case is no shortcut.
// Not goals: translation, paraphrase models, answers combining products,
// writing files (prepare owns the files).
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/product.h"

namespace vitrine::dataset {

struct TaskOptions {
  // Picks kinds, templates, languages and styles; recorded in the dataset.
  uint64_t seed = 1;
  // Questions per product, fewer when the description can't support them;
  // more = more qa data, but more repetition of the same sentences.
  int qa_per_product = 2;
  // Share of questions asked in Portuguese (answers stay in the description's language).
  double portuguese_share = 0.5;
  // Answers (lead-in included) end at a sentence boundary within this many
  // code points; a kind whose first usable sentence is longer is skipped.
  int answer_max_chars = 600;
  // Answers with fewer words ("Paperback.") teach nothing: the kind is skipped.
  int answer_min_words = 5;
  // qa-labelled router examples per product, next to its one title; more = qa-heavy router data.
  int router_questions_per_product = 1;
  // Questions naming the product by its main title (before ':', ' (', ' - ',
  // ' [') when it has one, as users type; 0 = always the full title.
  double short_title_share = 0.4;
  // Questions (and router titles) typed casually: lowercase and/or without the
  // final '?'; more = robust to sloppy input, less = tidier data.
  double casual_share = 0.2;
  // Answers opening with "According to its description: " / "Segundo a
  // descrição: " (quoted reviews always do); adds no facts.
  double lead_in_share = 0.5;
};

// Throws std::invalid_argument for options that cannot work.
void validate(const TaskOptions& options);

enum class QaKind : uint8_t { kWhatIs = 0, kAbout, kWhoFor, kFeatures, kTellMe };
inline constexpr int kNumQaKinds = 5;
std::string_view qa_kind_name(QaKind kind);  // "what_is", "about", "who_for", "features", "tell_me"

// Why a kind was not asked of a product.
enum class QaSkip : uint8_t {
  kNoAudienceCue = 0,  // who_for: no sentence says who it is for
  kNotAWork,           // about: not a book, film or record
  kNotDescriptive,     // the description opens with a biography or a quoted review
  kTooLong,            // the first usable sentence exceeds answer_max_chars
  kTooShort,           // the answer would have fewer than answer_min_words words
  kSameAnswer,         // same sentences as a question already asked of this product
};
inline constexpr int kNumQaSkips = 6;
std::string_view qa_skip_name(QaSkip skip);

enum class RouterKind : uint8_t {
  kTitle = 0,           // a bare title -> describe
  kQuestionTitle,       // a title that looks like a question -> describe (hard)
  kQuestion,            // a generated question -> qa
  kTitleHeavyQuestion,  // a question that is mostly the title -> qa (hard)
};
inline constexpr int kNumRouterKinds = 4;
std::string_view router_kind_name(RouterKind kind);

struct QuestionTemplate {
  std::string_view id;  // "what_is.en.0": recorded in each example
  QaKind kind;
  std::string_view lang;    // "en" or "pt"
  std::string_view before;  // text before the product name
  std::string_view after;   // text after it
};
inline constexpr int kNumQuestionTemplates = 40;

// The question templates: {before} + product name + {after}.
// Grouped by kind (QaKind order), then language (en, pt), kQuestionTemplatesPerGroup each.
inline constexpr int kQuestionTemplatesPerGroup = 4;
inline constexpr QuestionTemplate kQuestionTemplates[] = {
    {"what_is.en.0", QaKind::kWhatIs, "en", "What is ", "?"},
    {"what_is.en.1", QaKind::kWhatIs, "en", "What exactly is ", "?"},
    {"what_is.en.2", QaKind::kWhatIs, "en", "Can you tell me what ", " is?"},
    {"what_is.en.3", QaKind::kWhatIs, "en", "I'd like to know what ", " is."},
    {"what_is.pt.0", QaKind::kWhatIs, "pt", "O que é ", "?"},
    {"what_is.pt.1", QaKind::kWhatIs, "pt", "O que exatamente é ", "?"},
    {"what_is.pt.2", QaKind::kWhatIs, "pt", "Você sabe o que é ", "?"},
    {"what_is.pt.3", QaKind::kWhatIs, "pt", "Pode me dizer o que é ", "?"},
    {"about.en.0", QaKind::kAbout, "en", "What is ", " about?"},
    {"about.en.1", QaKind::kAbout, "en", "What's ", " about?"},
    {"about.en.2", QaKind::kAbout, "en", "What is the subject of ", "?"},
    {"about.en.3", QaKind::kAbout, "en", "Can you give me an idea of what ", " is about?"},
    {"about.pt.0", QaKind::kAbout, "pt", "Sobre o que é ", "?"},
    {"about.pt.1", QaKind::kAbout, "pt", "Do que trata ", "?"},
    {"about.pt.2", QaKind::kAbout, "pt", "Qual é o assunto de ", "?"},
    {"about.pt.3", QaKind::kAbout, "pt", "", " fala sobre o quê?"},
    {"who_for.en.0", QaKind::kWhoFor, "en", "Who is ", " for?"},
    {"who_for.en.1", QaKind::kWhoFor, "en", "Who is ", " meant for?"},
    {"who_for.en.2", QaKind::kWhoFor, "en", "Who should get ", "?"},
    {"who_for.en.3", QaKind::kWhoFor, "en", "Who is the intended audience of ", "?"},
    {"who_for.pt.0", QaKind::kWhoFor, "pt", "Para quem é ", "?"},
    {"who_for.pt.1", QaKind::kWhoFor, "pt", "", " é indicado para quem?"},
    {"who_for.pt.2", QaKind::kWhoFor, "pt", "Para quem é indicado ", "?"},
    {"who_for.pt.3", QaKind::kWhoFor, "pt", "Qual é o público de ", "?"},
    {"features.en.0", QaKind::kFeatures, "en", "What are the main features of ", "?"},
    {"features.en.1", QaKind::kFeatures, "en", "What are the key details of ", "?"},
    {"features.en.2", QaKind::kFeatures, "en", "What are the highlights of ", "?"},
    {"features.en.3", QaKind::kFeatures, "en", "What should I know about the details of ", "?"},
    {"features.pt.0", QaKind::kFeatures, "pt", "Quais as características de ", "?"},
    {"features.pt.1", QaKind::kFeatures, "pt", "Quais são as principais características de ", "?"},
    {"features.pt.2", QaKind::kFeatures, "pt", "Quais são os detalhes de ", "?"},
    {"features.pt.3", QaKind::kFeatures, "pt", "Quais são os destaques de ", "?"},
    {"tell_me.en.0", QaKind::kTellMe, "en", "Tell me about ", "."},
    {"tell_me.en.1", QaKind::kTellMe, "en", "Can you tell me about ", "?"},
    {"tell_me.en.2", QaKind::kTellMe, "en", "What can you tell me about ", "?"},
    {"tell_me.en.3", QaKind::kTellMe, "en", "I want to know more about ", "."},
    {"tell_me.pt.0", QaKind::kTellMe, "pt", "Fale sobre ", "."},
    {"tell_me.pt.1", QaKind::kTellMe, "pt", "Me fale sobre ", "."},
    {"tell_me.pt.2", QaKind::kTellMe, "pt", "O que você pode me dizer sobre ", "?"},
    {"tell_me.pt.3", QaKind::kTellMe, "pt", "Quero saber mais sobre ", "."},
};
static_assert(std::size(kQuestionTemplates) == kNumQuestionTemplates);
inline std::span<const QuestionTemplate> question_templates() {
  return kQuestionTemplates;
}

// Answer lead-ins, two per language: en first, then pt. None adds a fact.
inline constexpr std::string_view kAnswerLeadIns[] = {
    "According to its description: ", "The description says: ", "Segundo a descrição: ",
    "De acordo com a descrição: "};
inline std::span<const std::string_view> answer_lead_ins() {
  return kAnswerLeadIns;
}

// The main title users type: `title` cut before the first ':', " (", " - ",
// " [" or " -- ", trimmed; `title` itself when that leaves under 3 bytes.
std::string_view short_title(std::string_view title);

// Ends with '?' or starts with a question word ("Who", "What", "How", "Is",
// "Como", "O que", "Quem", "Tell me"...), ASCII case-insensitive.
bool looks_like_question(std::string_view text);

struct TaskStats {
  uint64_t seed = 0;
  uint64_t describe_examples = 0;
  uint64_t describe_skipped_empty = 0;         // no description
  uint64_t describe_skipped_title_only = 0;    // the description only repeats the title
  uint64_t qa_products = 0;                    // products offered to append_qa
  uint64_t qa_products_without_text = 0;       // empty description, or only the title
  uint64_t qa_products_without_questions = 0;  // had text, but no kind could be answered
  uint64_t qa_examples = 0;
  std::array<uint64_t, kNumQaKinds> qa_by_kind{};
  std::array<uint64_t, kNumQaKinds> qa_skipped_by_kind{};  // tried, could not be answered
  std::array<uint64_t, kNumQaSkips> qa_skipped_by_reason{};
  std::array<uint64_t, 2> qa_by_lang{};  // en, pt
  std::array<uint64_t, kNumQuestionTemplates> qa_by_template{};
  uint64_t qa_short_title = 0;  // named by the main title
  uint64_t qa_casual = 0;       // lowercase and/or no final '?'
  uint64_t qa_lead_in = 0;      // answer opens with a lead-in
  uint64_t router_describe = 0;
  uint64_t router_qa = 0;
  uint64_t router_hard = 0;
  uint64_t router_casual = 0;
  std::array<uint64_t, kNumRouterKinds> router_by_kind{};

  void merge(const TaskStats& other);  // sums counts (per-thread builders)
  nlohmann::ordered_json to_json() const;
};

class TaskBuilder {
 public:
  explicit TaskBuilder(TaskOptions options);  // validates

  // Each appends zero or more complete JSONL lines ("...}\n") to `out`;
  // deterministic in (seed, uid, title, content).
  void append_describe(const catalog::Product& p, std::string& out);
  void append_qa(const catalog::Product& p, std::string& out);
  void append_router(const catalog::Product& p, std::string& out);

  const TaskStats& stats() const { return stats_; }
  const TaskOptions& options() const { return options_; }

 private:
  struct Pick {
    std::array<int, 4> sentences{};  // indices into sentences_, ascending
    int count = 0;
  };

  void analyze(std::string_view content);
  uint32_t cues(int i);  // sentence_cues() of sentence i, computed once
  int length(int i);     // code points of sentence i, computed once
  bool is_work();        // a work cue in the title or any sentence
  // The first sentences, up to `max_sentences` or until `enough` code points.
  bool select_lead(int max_sentences, int enough, bool descriptive_only, int budget, Pick& pick,
                   QaSkip& skip);
  bool select(QaKind kind, int budget, Pick& pick, QaSkip& skip);
  void append_body(const Pick& pick, std::string& out) const;
  // Fills question_ from the bits of `h`; returns the template index.
  int build_question(QaKind kind, bool portuguese, std::string_view title, uint64_t h,
                     bool& short_used, bool& casual);
  uint64_t kind_hash(std::string_view uid, std::string_view salt);

  TaskOptions options_;
  TaskStats stats_;
  std::vector<std::string_view> sentences_;  // of the current description, listing notes removed
  std::vector<uint32_t> cues_;               // sentence_cues() of each, or kCuesUnknown
  std::vector<int> code_points_;             // length of each, or -1
  std::string_view title_;                   // of the current product
  int work_ = -1;                            // is_work() of the current product; -1 = not computed
  std::vector<Pick> asked_;                  // answers already given for the current product
  std::string key_;                          // hash input scratch
  std::string question_;                     // question scratch
  std::string answer_;                       // answer scratch
};

}  // namespace vitrine::dataset
