#include "dataset/tasks.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/utf8.h"
#include "dataset/language.h"
#include "dataset/sentences.h"

namespace vitrine::dataset {
namespace {

using nlohmann::json;

struct OwnedProduct {
  std::string uid, title, content;
  std::string_view lang = "unknown";
  catalog::Product view() const {
    catalog::Product p;
    p.uid = uid;
    p.title = title;
    p.content = content;
    p.lang = lang;
    return p;
  }
};

// Just enough of prepare's cleaning for the sample: numeric and common named
// character references, collapsed spaces.
std::string decode_minimal(std::string_view s) {
  static const std::map<std::string, char32_t> kNamed = {
      {"amp", '&'},       {"quot", '"'},     {"lt", '<'},       {"gt", '>'},
      {"apos", '\''},     {"nbsp", 0xA0},    {"mdash", 0x2014}, {"ndash", 0x2013},
      {"hellip", 0x2026}, {"rsquo", 0x2019}, {"lsquo", 0x2018}, {"ldquo", 0x201C},
      {"rdquo", 0x201D},  {"copy", 0xA9},    {"eacute", 0xE9}};
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '&') {
      const size_t semi = s.find(';', i);
      if (semi != std::string_view::npos && semi - i <= 10) {
        const std::string name(s.substr(i + 1, semi - i - 1));
        char32_t cp = 0;
        if (name.size() > 1 && name[0] == '#') {
          const bool hex = name[1] == 'x' || name[1] == 'X';
          cp = static_cast<char32_t>(std::stoul(name.substr(hex ? 2 : 1), nullptr, hex ? 16 : 10));
        } else if (auto it = kNamed.find(name); it != kNamed.end()) {
          cp = it->second;
        }
        if (cp >= 0x20 && cp != 0x7F && !(cp >= 0x80 && cp < 0xA0) &&
            !(cp >= 0xD800 && cp < 0xE000)) {
          utf8::append(out, cp == 0xA0 ? U' ' : cp);
          i = semi;
          continue;
        }
      }
    }
    if (s[i] == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(s[i]);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The sample's products (uid "line-N" where the record kept none), or empty.
std::vector<OwnedProduct> load_sample() {
  std::vector<OwnedProduct> products;
  std::ifstream in(std::filesystem::path(VITRINE_SHARED_DIR) / "data/amazon_titles_sample.jsonl");
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const json j = json::parse(line);
    OwnedProduct p;
    p.uid = j.contains("uid") ? j["uid"].get<std::string>() : "line-" + std::to_string(n);
    p.title = decode_minimal(j.at("title").get<std::string>());
    p.content = decode_minimal(j.at("content").get<std::string>());
    products.push_back(std::move(p));
  }
  for (OwnedProduct& p : products) p.lang = detect_language(p.title, p.content);
  return products;
}

const std::vector<OwnedProduct>& sample() {
  static const std::vector<OwnedProduct> products = load_sample();
  return products;
}

#define REQUIRE_SAMPLE()                                        \
  if (sample().empty())                                         \
  GTEST_SKIP() << "sample not found: " VITRINE_SHARED_DIR       \
                  "/data/amazon_titles_sample.jsonl is absent " \
                  "(set -DVITRINE_SHARED_DIR to the shared fixtures folder)"

struct Outputs {
  std::string describe, qa, router;
};

Outputs run(const std::vector<OwnedProduct>& products, TaskOptions options = {}) {
  TaskBuilder builder(options);
  Outputs out;
  for (const OwnedProduct& p : products) {
    builder.append_describe(p.view(), out.describe);
    builder.append_qa(p.view(), out.qa);
    builder.append_router(p.view(), out.router);
  }
  return out;
}

std::vector<json> parse_lines(const std::string& text) {
  std::vector<json> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    EXPECT_NE(end, std::string::npos) << "last line not terminated";
    if (end == std::string::npos) break;
    lines.push_back(json::parse(text.substr(start, end - start)));  // throws on bad JSON
    start = end + 1;
  }
  return lines;
}

std::vector<OwnedProduct> hand_written() {
  return {
      {"u1", "Girls Ballet Tutu Neon Blue",
       "Dance tutu for girls ages 2-8 years. Perfect for dance practice, recitals and "
       "performances, costumes or "
       "just for fun!"},
      {"u2", "Who Moved My Cheese?",
       "A simple parable about change. Four characters live in a maze and look for cheese to "
       "nourish them."},
      {"u3", "The \"Quoted\" Book \\ Backslash Edition: A Study",
       "This book examines quoting in \"modern\" prose. It includes 12 chapters and a glossary of "
       "300 terms."},
      {"u4", "Como Fazer Amigos e Influenciar Pessoas",
       "Um livro sobre como fazer amigos e influenciar pessoas."},
  };
}

TEST(Tasks, EveryLineParsesWithTheRightFields) {
  REQUIRE_SAMPLE();
  const Outputs out = run(sample());
  for (const json& j : parse_lines(out.describe)) {
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.size(), 3u);
    EXPECT_TRUE(j.at("uid").is_string());
    EXPECT_FALSE(j.at("prompt").get<std::string>().empty());
    EXPECT_FALSE(j.at("completion").get<std::string>().empty());
  }
  const auto qa = parse_lines(out.qa);
  ASSERT_GT(qa.size(), sample().size());
  std::set<std::string> template_ids;
  for (const QuestionTemplate& t : question_templates()) template_ids.insert(std::string(t.id));
  for (const json& j : qa) {
    EXPECT_EQ(j.size(), 7u);
    EXPECT_FALSE(j.at("question").get<std::string>().empty());
    EXPECT_FALSE(j.at("answer").get<std::string>().empty());
    EXPECT_TRUE(template_ids.count(j.at("template").get<std::string>())) << j.dump();
    EXPECT_TRUE(
        j.at("template").get<std::string>().starts_with(j.at("kind").get<std::string>() + "."));
    EXPECT_TRUE(j.at("lang") == "en" || j.at("lang") == "pt");
    ASSERT_TRUE(j.at("sources").is_array());
    ASSERT_EQ(j.at("sources").size(), 1u);
    EXPECT_EQ(j.at("sources")[0], j.at("uid"));
  }
  const auto router = parse_lines(out.router);
  EXPECT_EQ(router.size(), 2 * sample().size());  // one title + one question each
  for (const json& j : router) {
    EXPECT_EQ(j.size(), 5u);
    EXPECT_TRUE(j.at("text").is_string());
    EXPECT_TRUE(j.at("label") == "describe" || j.at("label") == "qa");
    EXPECT_TRUE(j.at("hard").is_boolean());
    EXPECT_TRUE(j.at("kind").is_string());
  }
}

// The answer minus its lead-in, if any.
std::string_view answer_body(std::string_view answer) {
  for (std::string_view lead : answer_lead_ins()) {
    if (answer.starts_with(lead)) return answer.substr(lead.size());
  }
  return answer;
}

TEST(Tasks, AnswersAreOnlyDescriptionSentences) {
  REQUIRE_SAMPLE();
  std::map<std::string, std::string> content_of;
  for (const OwnedProduct& p : sample()) content_of[p.uid] = p.content;
  const TaskOptions options;
  size_t checked = 0;
  for (const json& j : parse_lines(run(sample(), options).qa)) {
    const std::string answer = j.at("answer");
    const std::string& content = content_of.at(j.at("uid"));
    const std::string_view body = answer_body(answer);
    ASSERT_FALSE(body.empty());
    for (std::string_view sentence : split_sentences(body)) {
      EXPECT_NE(content.find(sentence), std::string::npos)
          << "invented text: \"" << sentence << "\"\nin answer: " << answer
          << "\ndescription: " << content;
    }
    EXPECT_LE(utf8::count_code_points(answer), static_cast<size_t>(options.answer_max_chars));
    ++checked;
  }
  EXPECT_GT(checked, 1000u);
}

TEST(Tasks, BothLanguagesAndEveryKindAppearOverTheSample) {
  REQUIRE_SAMPLE();
  std::map<std::string, int> kind_lang;
  for (const json& j : parse_lines(run(sample()).qa)) {
    ++kind_lang[j.at("kind").get<std::string>() + "/" + j.at("lang").get<std::string>()];
  }
  for (std::string kind : {"what_is", "about", "who_for", "features", "tell_me"}) {
    for (std::string lang : {"en", "pt"})
      EXPECT_GT(kind_lang[kind + "/" + lang], 0) << kind << "/" << lang;
  }
}

TEST(Tasks, WhoIsItForOnlyWithAnAudienceCue) {
  REQUIRE_SAMPLE();
  int who_for = 0;
  for (const json& j : parse_lines(run(sample()).qa)) {
    if (j.at("kind") != "who_for") continue;
    ++who_for;
    const std::string answer = j.at("answer");
    uint32_t cues = 0;
    for (std::string_view s : split_sentences(answer_body(answer))) cues |= sentence_cues(s);
    EXPECT_TRUE(cues & kCueAudience) << answer;
  }
  EXPECT_GT(who_for, 0);

  // A description without any audience: who_for is never asked, and the skip is counted.
  TaskOptions options;
  options.qa_per_product = kNumQaKinds;
  TaskBuilder builder(options);
  std::string out;
  const OwnedProduct p{"x", "Plain Steel Hammer",
                       "A hammer with a steel head and a wooden handle. It weighs 2 pounds."};
  builder.append_qa(p.view(), out);
  for (const json& j : parse_lines(out)) EXPECT_NE(j.at("kind"), "who_for");
  EXPECT_EQ(builder.stats().qa_by_kind[static_cast<int>(QaKind::kWhoFor)], 0u);
  EXPECT_EQ(builder.stats().qa_skipped_by_reason[static_cast<int>(QaSkip::kNoAudienceCue)], 1u);
  EXPECT_EQ(builder.stats().qa_skipped_by_reason[static_cast<int>(QaSkip::kNotAWork)],
            1u);  // a hammer has no plot
}

TEST(Tasks, AllKindsWhenTheDescriptionSupportsThem) {
  TaskOptions options;
  options.qa_per_product = kNumQaKinds;
  options.casual_share = 0;
  TaskBuilder builder(options);
  std::string out;
  const OwnedProduct p{
      "k", "The Garden Book: Planting for Beginners",
      "This illustrated book teaches the basics of growing vegetables, herbs and flowers at home "
      "in a small garden. "
      "It covers soil, seeds, watering and harvest in clear steps. "
      "Written for beginners and young gardeners, it needs no prior experience. "
      "The book includes 120 color photographs and a planting calendar."};
  builder.append_qa(p.view(), out);
  std::set<std::string> kinds;
  for (const json& j : parse_lines(out)) kinds.insert(j.at("kind"));
  EXPECT_EQ(kinds.size(), 5u) << out;
}

TEST(Tasks, QuestionTitlesStayDescribeAndAreHard) {
  TaskBuilder builder(TaskOptions{});
  for (std::string_view title :
       {"Who Moved My Cheese?", "What to Expect When You're Expecting",
        "Como Fazer Amigos e Influenciar Pessoas", "How to Cook Everything"}) {
    std::string out;
    const OwnedProduct p{"q-" + std::string(title), std::string(title),
                         "Some description of this product here."};
    builder.append_router(p.view(), out);
    const auto lines = parse_lines(out);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].at("label"), "describe") << title;
    EXPECT_EQ(lines[0].at("hard"), true) << title;
    EXPECT_EQ(lines[0].at("kind"), "question_title") << title;
    EXPECT_EQ(lines[1].at("label"), "qa");
    EXPECT_EQ(lines[1].at("hard"), true)
        << "a question about a question-like title is hard: " << lines[1].dump();
  }
  std::string out;
  const OwnedProduct plain{"p", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu."};
  builder.append_router(plain.view(), out);
  const auto lines = parse_lines(out);
  EXPECT_EQ(lines[0].at("label"), "describe");
  EXPECT_EQ(lines[0].at("hard"), false);
  EXPECT_EQ(lines[0].at("kind"), "title");
}

TEST(Tasks, QuestionsMostlyMadeOfTheTitleAreHard) {
  TaskOptions options;
  options.router_questions_per_product = 20;
  options.short_title_share = 0;
  TaskBuilder builder(options);
  std::string out;
  const OwnedProduct p{
      "long", "The Complete Illustrated Encyclopedia of Freshwater Fishing in North America", ""};
  builder.append_router(p.view(), out);
  int heavy = 0;
  for (const json& j : parse_lines(out)) {
    if (j.at("kind") != "title_heavy_question") continue;
    ++heavy;
    EXPECT_EQ(j.at("label"), "qa");
    EXPECT_EQ(j.at("hard"), true);
  }
  EXPECT_GT(heavy, 10);
}

TEST(Tasks, SomeQuestionsAreCasual) {
  REQUIRE_SAMPLE();
  int lowercase = 0, no_mark = 0;
  for (const json& j : parse_lines(run(sample()).router)) {
    if (j.at("label") != "qa") continue;
    const std::string text = j.at("text");
    if (text.back() != '?' && text.back() != '.') ++no_mark;
    bool has_upper = false;
    for (char c : text) has_upper = has_upper || (c >= 'A' && c <= 'Z');
    if (!has_upper) ++lowercase;
  }
  EXPECT_GT(lowercase, 20);
  EXPECT_GT(no_mark, 20);
}

TEST(Tasks, DeterministicOutput) {
  const std::vector<OwnedProduct> products = sample().empty() ? hand_written() : sample();
  const Outputs a = run(products), b = run(products);
  EXPECT_EQ(a.describe, b.describe);
  EXPECT_EQ(a.qa, b.qa);
  EXPECT_EQ(a.router, b.router);
}

TEST(Tasks, SeedChangesTemplatePicks) {
  REQUIRE_SAMPLE();
  TaskOptions other;
  other.seed = 2;
  const auto a = parse_lines(run(sample()).qa);
  const auto b = parse_lines(run(sample(), other).qa);
  std::map<std::string, std::vector<std::string>> picks_a, picks_b;
  for (const json& j : a) picks_a[j.at("uid")].push_back(j.at("template"));
  for (const json& j : b) picks_b[j.at("uid")].push_back(j.at("template"));
  int differ = 0, same = 0;
  for (const auto& [uid, templates] : picks_a) {
    const std::vector<std::string>& other_templates = picks_b[uid];
    for (size_t i = 0; i < std::min(templates.size(), other_templates.size()); ++i) {
      if (templates[i] == other_templates[i]) {
        ++same;
      } else {
        ++differ;
      }
    }
  }
  EXPECT_GT(differ, 5 * same) << "differ " << differ << ", same " << same;
}

TEST(Tasks, EscapesQuotesAndBackslashes) {
  TaskOptions options;
  options.short_title_share = 0;
  options.casual_share = 0;
  TaskBuilder builder(options);
  const std::vector<OwnedProduct> products = hand_written();
  const OwnedProduct& p = products[2];
  std::string describe, qa, router;
  builder.append_describe(p.view(), describe);
  builder.append_qa(p.view(), qa);
  builder.append_router(p.view(), router);
  const auto d = parse_lines(describe);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].at("prompt"), p.title);
  EXPECT_EQ(d[0].at("completion"), p.content);
  const auto q = parse_lines(qa);
  ASSERT_FALSE(q.empty());
  EXPECT_NE(q[0].at("question").get<std::string>().find(p.title), std::string::npos);
  EXPECT_EQ(parse_lines(router)[0].at("text"), p.title);
}

TEST(Tasks, DescribeSkipsEmptyAndTitleOnlyDescriptions) {
  TaskBuilder builder(TaskOptions{});
  std::string out;
  builder.append_describe(OwnedProduct{"a", "Adult Ballet Tutu Yellow", ""}.view(), out);
  builder.append_describe(
      OwnedProduct{"b", "Worship with Don Moen [VHS]", "Worship with Don Moen [VHS]"}.view(), out);
  builder.append_qa(
      OwnedProduct{"b", "Worship with Don Moen [VHS]", "Worship with Don Moen [VHS]"}.view(), out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(builder.stats().describe_skipped_empty, 1u);
  EXPECT_EQ(builder.stats().describe_skipped_title_only, 1u);
  EXPECT_EQ(builder.stats().qa_products_without_text, 1u);
}

TEST(Tasks, ListingNotesNeverReachAnswers) {
  TaskOptions options;
  options.qa_per_product = kNumQaKinds;
  TaskBuilder builder(options);
  std::string out;
  builder.append_qa(
      OwnedProduct{"n", "Kant Selections", "Text: English, German (translation)"}.view(), out);
  builder.append_qa(
      OwnedProduct{
          "m", "The Black Moon",
          "A gripping novel of Cornwall in the year 1794 and its people.--This text refers to "
          "an out of print or unavailable edition of this title."}
          .view(),
      out);
  EXPECT_EQ(out.find("Text:"), std::string::npos);
  EXPECT_EQ(out.find("This text refers to"), std::string::npos);
  EXPECT_FALSE(out.empty());
}

TEST(Tasks, ShortTitles) {
  EXPECT_EQ(short_title("The Way Things Work: An Illustrated Encyclopedia"), "The Way Things Work");
  EXPECT_EQ(short_title("The Very Bad Bunny (Beginner Series)"), "The Very Bad Bunny");
  EXPECT_EQ(short_title("Spirit Led - Moving By Grace"), "Spirit Led");
  EXPECT_EQ(short_title("Worship with Don Moen [VHS]"), "Worship with Don Moen");
  EXPECT_EQ(short_title("Misty of Chincoteague"), "Misty of Chincoteague");
  EXPECT_EQ(short_title("(Boxed Set)"), "(Boxed Set)");
}

TEST(Tasks, LooksLikeQuestion) {
  EXPECT_TRUE(looks_like_question("Who Moved My Cheese?"));
  EXPECT_TRUE(looks_like_question("What to Expect When You're Expecting"));
  EXPECT_TRUE(looks_like_question("Como Fazer Amigos"));
  EXPECT_TRUE(looks_like_question("o que é isso"));
  EXPECT_FALSE(looks_like_question("Whatever Happened to Janie"));
  EXPECT_FALSE(looks_like_question("Howl and Other Poems"));
  EXPECT_FALSE(looks_like_question("Girls Ballet Tutu"));
}

TEST(Tasks, LeadInsAreShortAndFactFree) {
  for (std::string_view lead : answer_lead_ins()) {
    EXPECT_LE(utf8::count_code_points(lead), 30u) << lead;  // kMaxLeadInCodePoints in tasks.cc
    EXPECT_TRUE(lead.ends_with(": ")) << lead;
    EXPECT_NE(lead.find("descri"), std::string_view::npos)
        << lead;  // points at the source, nothing else
  }
}

TEST(Tasks, TemplatesCoverEveryKindInBothLanguages) {
  std::map<std::string, int> groups;
  std::set<std::string> ids;
  for (const QuestionTemplate& t : question_templates()) {
    ++groups[std::string(qa_kind_name(t.kind)) + "/" + std::string(t.lang)];
    EXPECT_TRUE(ids.insert(std::string(t.id)).second) << t.id;
  }
  EXPECT_EQ(groups.size(), 10u);
  for (const auto& [group, n] : groups) EXPECT_GE(n, 3) << group;
}

TEST(Tasks, StatsAddUpAndPrint) {
  REQUIRE_SAMPLE();
  TaskBuilder a(TaskOptions{}), b(TaskOptions{});
  std::string out;
  const size_t half = sample().size() / 2;
  for (size_t i = 0; i < sample().size(); ++i)
    (i < half ? a : b).append_qa(sample()[i].view(), out);
  TaskStats total = a.stats();
  total.merge(b.stats());
  EXPECT_EQ(total.qa_products, sample().size());
  EXPECT_EQ(total.qa_examples, parse_lines(out).size());
  uint64_t by_kind = 0, by_template = 0;
  for (uint64_t n : total.qa_by_kind) by_kind += n;
  for (uint64_t n : total.qa_by_template) by_template += n;
  EXPECT_EQ(by_kind, total.qa_examples);
  EXPECT_EQ(by_template, total.qa_examples);
  const nlohmann::ordered_json j = total.to_json();
  EXPECT_EQ(j.at("seed"), 1);
  EXPECT_EQ(j.at("qa").at("examples"), total.qa_examples);
  EXPECT_EQ(j.at("qa").at("by_template").size(), static_cast<size_t>(kNumQuestionTemplates));
  std::cout << "task stats over the sample: " << j.dump() << "\n";
}

TEST(Tasks, ValidateRejectsBadOptions) {
  TaskOptions o;
  o.portuguese_share = 1.5;
  EXPECT_THROW(validate(o), std::invalid_argument);
  o = {};
  o.qa_per_product = 9;
  EXPECT_THROW(validate(o), std::invalid_argument);
  o = {};
  o.answer_max_chars = 10;
  EXPECT_THROW(TaskBuilder{o}, std::invalid_argument);
  EXPECT_NO_THROW(validate(TaskOptions{}));
}

}  // namespace
}  // namespace vitrine::dataset
