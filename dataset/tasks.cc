#include "dataset/tasks.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/json_escape.h"
#include "common/stable_hash.h"
#include "common/strings.h"
#include "common/utf8.h"
#include "dataset/sentences.h"

namespace vitrine::dataset {
namespace {

constexpr std::array<std::string_view, kNumQaKinds> kKindNames = {"what_is", "about", "who_for",
                                                                  "features", "tell_me"};
constexpr std::array<std::string_view, kNumQaSkips> kSkipNames = {
    "no_audience_cue", "not_a_work", "not_descriptive", "too_long", "too_short", "same_answer"};
constexpr std::array<std::string_view, kNumRouterKinds> kRouterKindNames = {
    "title", "question_title", "question", "title_heavy_question"};
constexpr std::array<std::string_view, 2> kLangs = {"en", "pt"};

constexpr auto& kTemplates = kQuestionTemplates;
constexpr int kTemplatesPerGroup = kQuestionTemplatesPerGroup;

constexpr bool templates_grouped() {
  for (int i = 0; i < kNumQuestionTemplates; ++i) {
    const int group = i / kTemplatesPerGroup;
    if (static_cast<int>(kTemplates[i].kind) != group / 2 ||
        kTemplates[i].lang != kLangs[group % 2])
      return false;
  }
  return true;
}
static_assert(templates_grouped(), "kTemplates must be grouped by kind, then language");

constexpr auto& kLeadIns = kAnswerLeadIns;

// Lead answers stop adding sentences once this long (code points): what_is
// wants a definition, about a gist, tell_me as much as fits.
constexpr int kShortLead = 80;
constexpr int kLongLead = 200;

constexpr uint32_t kCuesUnknown = 1u << 31;  // not a SentenceCue bit
constexpr int kMaxLeadInCodePoints = 30;     // the longest lead-in has 27 (tests check)

// Words (runs of non-spaces) in `s`, counting stops at `limit`.
int count_words(std::string_view s, int limit) {
  int words = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size() && words < limit; ++i) {
    const bool space = is_space(s[i]);
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

// Notes about the listing, not the product: Amazon's "--This text refers to
// ... edition." (prepare's cleaner usually removes it already) is cut off;
// "Text: English, French (translation)" sentences are dropped.
std::string_view strip_listing_notes(std::string_view s) {
  if (s.starts_with("Text:") || s.starts_with("Language:")) return {};
  const size_t pos = s.find("This text refers to");
  if (pos == std::string_view::npos) return s;
  s = s.substr(0, pos);
  while (!s.empty() && (is_space(s.back()) || s.back() == '-')) s.remove_suffix(1);
  return trim(s);
}

// `width` bits of `h` from `shift`, as a number in [0, 1).
double unit_bits(uint64_t h, int shift, int width) {
  const uint64_t mask = (uint64_t{1} << width) - 1;
  return static_cast<double>((h >> shift) & mask) / static_cast<double>(uint64_t{1} << width);
}

int code_points(std::string_view s) {
  return static_cast<int>(utf8::count_code_points(s));
}

// Appends `before` (',' or '{') then "key":"value".
void append_field(std::string& out, std::string_view key, std::string_view value,
                  char before = ',') {
  out.push_back(before);
  append_json_key(out, key);
  append_json_string(out, value);
}

template <size_t N>
void add_counts(std::array<uint64_t, N>& into, const std::array<uint64_t, N>& from) {
  for (size_t i = 0; i < N; ++i) into[i] += from[i];
}

// {"name(i)": counts[i], ...}
template <size_t N, typename Name>
nlohmann::ordered_json counts_json(const std::array<uint64_t, N>& counts, Name name) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (size_t i = 0; i < N; ++i) j[std::string(name(i))] = counts[i];
  return j;
}

// Words that open a question, ASCII-lowercased ("o que", "tell me": two words).
constexpr std::string_view kQuestionOpeners[] = {
    "who",   "what",    "what's",  "whats",   "why",        "how",      "when",    "where",
    "which", "whose",   "whom",    "is",      "are",        "can",      "could",   "do",
    "does",  "did",     "should",  "would",   "will",       "como",     "quem",    "quando",
    "onde",  "qual",    "quais",   "quanto",  "quantos",    "quantas",  "porque",  "cómo",
    "qué",   "quién",   "cuándo",  "dónde",   "cuál",       "pourquoi", "comment", "où",
    "o que", "por que", "por qué", "tell me", "fale sobre", "me fale"};

}  // namespace

std::string_view qa_kind_name(QaKind kind) {
  return kKindNames[static_cast<int>(kind)];
}
std::string_view qa_skip_name(QaSkip skip) {
  return kSkipNames[static_cast<int>(skip)];
}
std::string_view router_kind_name(RouterKind kind) {
  return kRouterKindNames[static_cast<int>(kind)];
}

std::string_view short_title(std::string_view title) {
  title = trim(title);
  size_t cut = std::string_view::npos;
  for (std::string_view mark : {":", " (", " - ", " [", " -- ", " \xE2\x80\x93 "}) {
    cut = std::min(cut, title.find(mark));
  }
  if (cut == std::string_view::npos) return title;
  std::string_view main = trim(title.substr(0, cut));
  while (!main.empty() && (main.back() == ',' || main.back() == ';')) main.remove_suffix(1);
  return main.size() < 3 ? title : main;
}

bool looks_like_question(std::string_view text) {
  text = trim(text);
  if (text.empty()) return false;
  if (text.back() == '?') return true;
  std::array<char, 16> lower{};
  size_t n = 0;
  for (char c : text) {
    if (n == lower.size() || c == ',' || c == ':' || c == '!' || c == '.') break;
    lower[n++] = ascii_lower(c);
  }
  const std::string_view head(lower.data(), n);
  for (std::string_view opener : kQuestionOpeners) {
    if (head.starts_with(opener) && (head.size() == opener.size() || head[opener.size()] == ' '))
      return true;
  }
  return false;
}

void validate(const TaskOptions& o) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("tasks: " + what);
  };
  auto share = [](double x) { return x >= 0.0 && x <= 1.0; };
  require(o.qa_per_product >= 0 && o.qa_per_product <= kNumQaKinds,
          fmt::format("qa_per_product must be in [0, {}] (one per kind): got {}", kNumQaKinds,
                      o.qa_per_product));
  require(
      share(o.portuguese_share) && share(o.short_title_share) && share(o.casual_share) &&
          share(o.lead_in_share),
      "portuguese_share, short_title_share, casual_share and lead_in_share are shares in [0, 1]");
  require(
      o.answer_max_chars >= 80,
      fmt::format("answer_max_chars = {} leaves no room for a sentence after a lead-in: use >= 80",
                  o.answer_max_chars));
  require(o.answer_min_words >= 0, "answer_min_words must be >= 0");
  require(o.router_questions_per_product >= 0 && o.router_questions_per_product <= 100,
          fmt::format("router_questions_per_product must be in [0, 100]: got {}",
                      o.router_questions_per_product));
}

void TaskStats::merge(const TaskStats& o) {
  describe_examples += o.describe_examples;
  describe_skipped_empty += o.describe_skipped_empty;
  describe_skipped_title_only += o.describe_skipped_title_only;
  qa_products += o.qa_products;
  qa_products_without_text += o.qa_products_without_text;
  qa_products_without_questions += o.qa_products_without_questions;
  qa_examples += o.qa_examples;
  add_counts(qa_by_kind, o.qa_by_kind);
  add_counts(qa_skipped_by_kind, o.qa_skipped_by_kind);
  add_counts(qa_skipped_by_reason, o.qa_skipped_by_reason);
  add_counts(qa_by_lang, o.qa_by_lang);
  add_counts(qa_by_template, o.qa_by_template);
  qa_short_title += o.qa_short_title;
  qa_casual += o.qa_casual;
  qa_lead_in += o.qa_lead_in;
  router_describe += o.router_describe;
  router_qa += o.router_qa;
  router_hard += o.router_hard;
  router_casual += o.router_casual;
  add_counts(router_by_kind, o.router_by_kind);
}

nlohmann::ordered_json TaskStats::to_json() const {
  auto kind_name = [](size_t i) { return kKindNames[i]; };
  nlohmann::ordered_json j;
  j["seed"] = seed;
  j["describe"] = {{"examples", describe_examples},
                   {"skipped_empty", describe_skipped_empty},
                   {"skipped_title_only", describe_skipped_title_only}};
  j["qa"] = {
      {"examples", qa_examples},
      {"products", qa_products},
      {"products_without_text", qa_products_without_text},
      {"products_without_questions", qa_products_without_questions},
      {"by_kind", counts_json(qa_by_kind, kind_name)},
      {"skipped_by_kind", counts_json(qa_skipped_by_kind, kind_name)},
      {"skipped_by_reason",
       counts_json(qa_skipped_by_reason, [](size_t i) { return kSkipNames[i]; })},
      {"by_lang", counts_json(qa_by_lang, [](size_t i) { return kLangs[i]; })},
      {"short_title", qa_short_title},
      {"casual", qa_casual},
      {"lead_in", qa_lead_in},
      {"by_template", counts_json(qa_by_template, [](size_t i) { return kTemplates[i].id; })}};
  j["router"] = {
      {"describe", router_describe},
      {"qa", router_qa},
      {"hard", router_hard},
      {"casual", router_casual},
      {"by_kind", counts_json(router_by_kind, [](size_t i) { return kRouterKindNames[i]; })}};
  return j;
}

TaskBuilder::TaskBuilder(TaskOptions options) : options_(options) {
  validate(options_);
  stats_.seed = options_.seed;
}

uint64_t TaskBuilder::kind_hash(std::string_view uid, std::string_view salt) {
  key_.assign(uid);
  key_.push_back('#');
  key_.append(salt);
  return stable_hash64(key_, options_.seed);
}

void TaskBuilder::append_describe(const catalog::Product& p, std::string& out) {
  const std::string_view content = trim(p.content);
  if (content.empty()) {
    ++stats_.describe_skipped_empty;
    return;
  }
  if (ascii_iequals(content, trim(p.title))) {
    ++stats_.describe_skipped_title_only;
    return;
  }
  append_field(out, "uid", p.uid, '{');
  append_field(out, "prompt", p.title);
  append_field(out, "completion", p.content);
  out.append("}\n");
  ++stats_.describe_examples;
}

void TaskBuilder::analyze(std::string_view content) {
  split_sentences(content, sentences_);
  size_t kept = 0;
  for (std::string_view s : sentences_) {
    s = strip_listing_notes(s);
    if (!s.empty()) sentences_[kept++] = s;
  }
  sentences_.resize(kept);
  // Filled on first use: most products need the cues of a few sentences only.
  cues_.assign(kept, kCuesUnknown);
  code_points_.assign(kept, -1);
  work_ = -1;
}

uint32_t TaskBuilder::cues(int i) {
  if (cues_[i] == kCuesUnknown) cues_[i] = sentence_cues(sentences_[i]);
  return cues_[i];
}

int TaskBuilder::length(int i) {
  if (code_points_[i] < 0) code_points_[i] = code_points(sentences_[i]);
  return code_points_[i];
}

bool TaskBuilder::is_work() {
  if (work_ < 0) {
    bool work = (sentence_cues(title_) & kCueWork) != 0;
    for (int i = 0; i < static_cast<int>(sentences_.size()) && !work; ++i)
      work = (cues(i) & kCueWork) != 0;
    work_ = work ? 1 : 0;
  }
  return work_ == 1;
}

bool TaskBuilder::select_lead(int max_sentences, int enough, bool descriptive_only, int budget,
                              Pick& pick, QaSkip& skip) {
  constexpr uint32_t kNotDescription = kCueBio | kCueBlurb;
  if (descriptive_only && (cues(0) & kNotDescription)) {
    skip = QaSkip::kNotDescriptive;
    return false;
  }
  int total = 0;
  const int n = std::min(max_sentences, static_cast<int>(sentences_.size()));
  for (int i = 0; i < n && total < enough; ++i) {
    if (descriptive_only && (cues(i) & kNotDescription)) break;
    const int cost = length(i) + (pick.count > 0 ? 1 : 0);
    if (total + cost > budget) break;
    total += cost;
    pick.sentences[pick.count++] = i;
  }
  if (pick.count == 0) skip = QaSkip::kTooLong;
  return pick.count > 0;
}

bool TaskBuilder::select(QaKind kind, int budget, Pick& pick, QaSkip& skip) {
  const int n = static_cast<int>(sentences_.size());
  switch (kind) {
    case QaKind::kWhatIs:
      return select_lead(2, kShortLead, true, budget, pick, skip);
    case QaKind::kTellMe:
      return select_lead(3, budget, false, budget, pick, skip);
    case QaKind::kAbout:
      if (!is_work()) {
        skip = QaSkip::kNotAWork;
        return false;
      }
      return select_lead(2, kLongLead, true, budget, pick, skip);
    case QaKind::kWhoFor: {
      bool any = false;
      for (int i = 0; i < n; ++i) {
        if (!(cues(i) & kCueAudience) || (cues(i) & kCueBio)) continue;
        any = true;
        if (length(i) > budget) continue;
        // "Ages 6 months-2 years." alone is terse: keep the sentence before it.
        if (count_words(sentences_[i], 6) < 6 && i > 0 && !(cues(i - 1) & kCueBio) &&
            length(i - 1) + 1 + length(i) <= budget) {
          pick.sentences[pick.count++] = i - 1;
        }
        pick.sentences[pick.count++] = i;
        return true;
      }
      skip = any ? QaSkip::kTooLong : QaSkip::kNoAudienceCue;
      return false;
    }
    case QaKind::kFeatures: {
      int total = 0;
      for (int i = 0; i < n && pick.count < 3; ++i) {
        if (!(cues(i) & kCueDetail) || (cues(i) & (kCueBio | kCueBlurb))) continue;
        const int cost = length(i) + (pick.count > 0 ? 1 : 0);
        if (total + cost > budget) continue;
        total += cost;
        pick.sentences[pick.count++] = i;
      }
      return pick.count > 0 || select_lead(2, kShortLead, true, budget, pick, skip);
    }
  }
  return false;
}

void TaskBuilder::append_body(const Pick& pick, std::string& out) const {
  int i = 0;
  while (i < pick.count) {
    int j = i;
    while (j + 1 < pick.count && pick.sentences[j + 1] == pick.sentences[j] + 1) ++j;
    // Contiguous sentences: the original span, byte for byte.
    const std::string_view first = sentences_[pick.sentences[i]];
    const std::string_view last = sentences_[pick.sentences[j]];
    if (i > 0) out.push_back(' ');
    out.append(first.data(), static_cast<size_t>(last.data() + last.size() - first.data()));
    i = j + 1;
  }
}

int TaskBuilder::build_question(QaKind kind, bool portuguese, std::string_view title, uint64_t h,
                                bool& short_used, bool& casual) {
  const int group = (static_cast<int>(kind) * 2 + (portuguese ? 1 : 0)) * kTemplatesPerGroup;
  const int index = group + static_cast<int>(((h >> 16) & 0xFF) % kTemplatesPerGroup);
  const QuestionTemplate& t = kTemplates[index];
  std::string_view name = title;
  short_used = false;
  if (unit_bits(h, 24, 8) < options_.short_title_share) {
    const std::string_view main = short_title(title);
    if (main.size() != title.size()) {
      name = main;
      short_used = true;
    }
  }
  question_.assign(t.before);
  question_.append(name);
  const bool name_punctuated =
      !name.empty() && (name.back() == '?' || name.back() == '!' || name.back() == '.');
  if (!(name_punctuated && t.after.size() == 1))
    question_.append(t.after);  // not "Who Moved My Cheese??"
  casual = unit_bits(h, 32, 8) < options_.casual_share;
  if (casual) {
    const uint64_t style = (h >> 40) & 3;  // 0: lowercase, 1: no final mark, 2-3: both
    if (style != 1) question_ = ascii_lower(question_);
    if (style != 0) {
      while (!question_.empty() &&
             (question_.back() == '?' || question_.back() == '.' || is_space(question_.back()))) {
        question_.pop_back();
      }
    }
  }
  return index;
}

void TaskBuilder::append_qa(const catalog::Product& p, std::string& out) {
  ++stats_.qa_products;
  const std::string_view title = trim(p.title);
  const std::string_view content = trim(p.content);
  if (content.empty() || title.empty() || ascii_iequals(content, title)) {
    ++stats_.qa_products_without_text;
    return;
  }
  analyze(content);
  if (sentences_.empty()) {
    ++stats_.qa_products_without_text;
    return;
  }
  title_ = title;

  std::array<std::pair<uint64_t, int>, kNumQaKinds> order;
  for (int k = 0; k < kNumQaKinds; ++k) order[k] = {kind_hash(p.uid, kKindNames[k]), k};
  std::sort(order.begin(), order.end());

  asked_.clear();
  int emitted = 0;
  for (const auto& [h, k] : order) {
    if (emitted >= options_.qa_per_product) break;
    const auto kind = static_cast<QaKind>(k);
    const bool portuguese = unit_bits(h, 0, 16) < options_.portuguese_share;
    const std::string_view lead_in = kLeadIns[(portuguese ? 2 : 0) + ((h >> 50) & 1)];
    const int budget =
        options_.answer_max_chars - kMaxLeadInCodePoints;  // room for a lead-in, wanted or not

    Pick pick;
    QaSkip skip = QaSkip::kTooShort;
    bool ok = select(kind, budget, pick, skip);
    if (ok) {
      int words = 0;
      for (int i = 0; i < pick.count && words < options_.answer_min_words; ++i) {
        words += count_words(sentences_[pick.sentences[i]], options_.answer_min_words);
      }
      if (words < options_.answer_min_words) {
        ok = false;
        skip = QaSkip::kTooShort;
      }
    }
    if (ok) {
      for (const Pick& before : asked_) {
        if (before.count == pick.count &&
            std::equal(before.sentences.begin(), before.sentences.begin() + pick.count,
                       pick.sentences.begin())) {
          ok = false;
          skip = QaSkip::kSameAnswer;
        }
      }
    }
    if (!ok) {
      ++stats_.qa_skipped_by_kind[k];
      ++stats_.qa_skipped_by_reason[static_cast<int>(skip)];
      continue;
    }
    asked_.push_back(pick);
    // A quoted review reads as the answer's own voice without a lead-in.
    const bool lead =
        unit_bits(h, 42, 8) < options_.lead_in_share || (cues(pick.sentences[0]) & kCueBlurb);
    bool short_used = false, casual = false;
    const int index = build_question(kind, portuguese, title, h, short_used, casual);
    answer_.assign(lead ? lead_in : std::string_view());
    append_body(pick, answer_);

    append_field(out, "uid", p.uid, '{');
    append_field(out, "question", question_);
    append_field(out, "answer", answer_);
    append_field(out, "kind", kKindNames[k]);
    append_field(out, "template", kTemplates[index].id);
    append_field(out, "lang", kTemplates[index].lang);
    out.append(",\"sources\":[");
    append_json_string(out, p.uid);
    out.append("]}\n");

    ++emitted;
    ++stats_.qa_examples;
    ++stats_.qa_by_kind[k];
    ++stats_.qa_by_lang[portuguese ? 1 : 0];
    ++stats_.qa_by_template[index];
    stats_.qa_short_title += short_used;
    stats_.qa_casual += casual;
    stats_.qa_lead_in += lead;
  }
  if (emitted == 0) ++stats_.qa_products_without_questions;
}

void TaskBuilder::append_router(const catalog::Product& p, std::string& out) {
  const std::string_view title = trim(p.title);
  if (title.empty()) return;
  auto write = [&](std::string_view text, bool qa, bool hard, RouterKind kind) {
    append_field(out, "uid", p.uid, '{');
    append_field(out, "text", text);
    out.append(qa ? ",\"label\":\"qa\"" : ",\"label\":\"describe\"");
    out.append(hard ? ",\"hard\":true" : ",\"hard\":false");
    append_field(out, "kind", kRouterKindNames[static_cast<int>(kind)]);
    out.append("}\n");
    ++(qa ? stats_.router_qa : stats_.router_describe);
    stats_.router_hard += hard;
    ++stats_.router_by_kind[static_cast<int>(kind)];
  };

  // The title: always describe, however much it looks like a question.
  const bool question_title = looks_like_question(title);
  const uint64_t th = kind_hash(p.uid, "router.title");
  question_.assign(title);
  if (unit_bits(th, 32, 8) < options_.casual_share) {  // users paste titles lowercase too
    question_ = ascii_lower(question_);
    ++stats_.router_casual;
  }
  write(question_, false, question_title,
        question_title ? RouterKind::kQuestionTitle : RouterKind::kTitle);

  const int title_code_points = code_points(title);
  for (int q = 0; q < options_.router_questions_per_product; ++q) {
    std::array<char, 24> salt{};
    std::string_view prefix = "router.q";
    std::copy(prefix.begin(), prefix.end(), salt.begin());
    const auto end = std::to_chars(salt.data() + prefix.size(), salt.data() + salt.size(), q).ptr;
    const uint64_t h =
        kind_hash(p.uid, std::string_view(salt.data(), static_cast<size_t>(end - salt.data())));
    const auto kind = static_cast<QaKind>((h >> 56) % kNumQaKinds);
    const bool portuguese = unit_bits(h, 0, 16) < options_.portuguese_share;
    bool short_used = false, casual = false;
    build_question(kind, portuguese, title, h, short_used, casual);
    const int name_code_points = short_used ? code_points(short_title(title)) : title_code_points;
    const bool title_heavy =
        4 * name_code_points >= 3 * code_points(question_);  // mostly the title
    stats_.router_casual += casual;
    write(question_, true, title_heavy || question_title,
          title_heavy ? RouterKind::kTitleHeavyQuestion : RouterKind::kQuestion);
  }
}

}  // namespace vitrine::dataset
