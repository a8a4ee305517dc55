// The answerer without gRPC: route choice (classifier, forced, base),
// experiment arms, adapter leases, Compare, conversations (limits, the
// system prompt, the oldest turns left out, follow-ups) and questions about
// no known product (said, or generated for), on plain structs,
// with the real stories260K-hf model from ../shared, a hand-made catalogue,
// a classifier with hand-set weights and random LoRA adapters published in
// the test.
#include "router/answerer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <set>

#include "common/errors.h"
#include "models/peft_adapter.h"
#include "tests/agents/hand_catalog.h"
#include "tests/support/constant_classifier.h"
#include "tests/support/temp_dir.h"

namespace vitrine::router {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kQuestion = "Does the kettle switch itself off?";
constexpr const char* kTitle =
    "Who Moved My Cheese?";  // a catalogue title that reads as a question

using vitrine::testing::constant_classifier;

// A LoRA adapter on every projection of `model` with random A and B (B
// nonzero, unlike a fresh adapter's), so it changes the model's answers.
models::PeftAdapter random_adapter(models::LlamaForCausalLM& model, uint64_t seed) {
  at::manual_seed(seed);
  models::PeftAdapter adapter;
  adapter.config.r = 4;
  adapter.config.lora_alpha = 8;
  std::set<std::string> targets;
  for (auto& [path, module] : model->projections()) {
    models::LoraWeights w;
    w.a = at::randn({4, module->in_features()}) * 0.3;   // [r, in]
    w.b = at::randn({module->out_features(), 4}) * 0.3;  // [out, r]
    w.scaling = adapter.config.scaling();
    adapter.modules[path] = w;
    targets.insert(path.substr(path.rfind('.') + 1));
  }
  adapter.config.target_modules.assign(targets.begin(), targets.end());
  return adapter;
}

Request request(const std::string& text, RouteAsked route = RouteAsked::kAuto,
                int max_new_tokens = 12) {
  Request r;
  r.text = text;
  r.route = route;
  r.generation.max_new_tokens = max_new_tokens;
  return r;
}

// One experiment, "tuned-vs-base", over `route` with `arms`.
std::shared_ptr<const Experiments> experiments(const Json& arms, const std::string& route) {
  Json experiment = Json::object();
  experiment["name"] = "tuned-vs-base";
  experiment["routes"] = Json::array({route});
  experiment["arms"] = arms;
  Json config = Json::object();
  config["experiments"] = Json::array({experiment});
  return std::make_shared<const Experiments>(parse_experiments_config(config));
}

// An arm as the experiments file writes it.
Json arm(const std::string& name, int64_t adapter_version) {
  Json out = Json::object();
  out["name"] = name;
  out["adapter_version"] = adapter_version;
  return out;
}

class AnswererTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto inputs = vitrine::testing::sample_and_model();
    if (!inputs) {
      GTEST_SKIP() << "../shared/models/stories260K-hf not found: the answerer tests run the "
                      "real model (check out ../shared beside this tree)";
    }
    model_dir_ = inputs->model;
    agents::testing::write_hand_catalog(dir_ / "catalog.sqlite");
    catalog_ = std::make_shared<const catalog::Catalog>(dir_ / "catalog.sqlite");
  }

  // Publishes a random adapter as adapters/<name>/v<version>/, as the
  // trainer service does.
  void publish(const std::string& name, int version, uint64_t seed) {
    models::LlamaForCausalLM model = models::load_llama(model_dir_);
    models::save_peft_adapter(dir_ / "adapters" / name / ("v" + std::to_string(version)),
                              random_adapter(model, seed));
  }

  // An answerer on a fresh engine with the published adapters loaded and a
  // classifier that says softmax(describe_bias, qa_bias).
  Answerer make(double describe_bias = 0, double qa_bias = 4,
                std::shared_ptr<const Experiments> experiments = nullptr,
                AnswererOptions options = {}, models::EngineOptions engine = {}) {
    AnswererParts parts;
    models::LlamaForCausalLM model =
        models::load_llama(model_dir_, "cpu", models::WeightLayout::kPacked);
    parts.tokenizer = models::load_tokenizer(model_dir_);
    parts.family = models::detect_chat_family(model_dir_);
    parts.engine = std::make_shared<models::Engine>(model, parts.tokenizer, engine);
    parts.registry = std::make_shared<AdapterRegistry>(
        *parts.engine, dir_ / "adapters",
        std::vector<std::string>{"describe", "qa", "qa_grounded"});
    EXPECT_TRUE(parts.registry->reload().errors.empty());
    parts.classifier = std::make_shared<const agents::ClassifierAgent>(
        constant_classifier(describe_bias, qa_bias), catalog_);
    parts.describe = std::make_shared<const agents::DescribeAgent>(catalog_);
    parts.qa = std::make_shared<const agents::QaAgent>(catalog_);
    if (unknown_)
      parts.unknown = std::make_shared<const agents::UnknownProductAgent>(catalog_, *unknown_);
    parts.experiments = std::move(experiments);
    return Answerer(std::move(parts), options);
  }

  // The prompt's ids for `turn`, as the answerer encodes it for this model.
  std::vector<int64_t> prompt_ids(const models::ChatTurn& turn) const {
    const auto tokenizer = models::load_tokenizer(model_dir_);
    const std::vector<int32_t> ids = tokenizer->encode(
        models::render_chat_prompt(models::detect_chat_family(model_dir_), turn), true);
    return {ids.begin(), ids.end()};
  }

  vitrine::testing::TempDir dir_;
  fs::path model_dir_;
  std::shared_ptr<const catalog::Catalog> catalog_;
  // make()'s unknown-product agent; none: no closest titles, the model answers.
  std::optional<agents::UnknownProductOptions> unknown_;
};

TEST_F(AnswererTest, TheClassifierRoutesAutoAndForcedRoutesAreObeyed) {
  publish("describe", 1, 1);
  publish("qa", 1, 2);
  const Answerer answerer = make(0, 4);  // the classifier says qa, 98%

  const Plan question = answerer.plan(request(kQuestion));
  EXPECT_EQ(question.answer.route.agent, "qa");
  EXPECT_EQ(question.answer.route.evidence, "classifier");
  EXPECT_GT(question.answer.route.classifier_confidence, 0.95);
  EXPECT_EQ(question.answer.route.adapter, "qa");
  EXPECT_EQ(question.answer.route.adapter_version, 1);
  EXPECT_EQ(question.answer.model, "qa");
  ASSERT_NE(question.lease, nullptr);
  EXPECT_EQ(question.request.adapter_slot, question.lease->slot);
  // The decision is timed: well under a millisecond, never zero.
  EXPECT_GT(question.answer.timings.route_ms, 0);
  EXPECT_LT(question.answer.timings.route_ms, 50);

  // A catalogue title is described whatever the classifier says, and named.
  const Plan title = answerer.plan(request(kTitle));
  EXPECT_EQ(title.answer.route.agent, "describe");
  EXPECT_EQ(title.answer.route.evidence, "catalogue title");
  EXPECT_EQ(title.answer.route.adapter, "describe");
  ASSERT_FALSE(title.answer.sources.empty());
  EXPECT_EQ(title.answer.sources[0].uid, "0399144463");
  EXPECT_TRUE(title.answer.product_found);
  // Exactly the prompt the describe adapter was tuned on, as tokens.
  const models::Tokenizer& tokenizer = *answerer.parts().tokenizer;
  const std::vector<int32_t> ids = tokenizer.encode(
      models::render_chat_prompt(answerer.parts().family,
                                 prompts::task_turn(prompts::Task::kDescribe, kTitle)),
      true);
  EXPECT_EQ(title.request.prompt, std::vector<int64_t>(ids.begin(), ids.end()));
  EXPECT_EQ(title.request.options.max_new_tokens, 12);
  EXPECT_DOUBLE_EQ(title.request.options.repetition_penalty, 1.1);  // the daemon's default

  // Forced routes skip the classifier.
  const Plan forced = answerer.plan(request(kQuestion, RouteAsked::kDescribe));
  EXPECT_EQ(forced.answer.route.agent, "describe");
  EXPECT_EQ(forced.answer.route.evidence, "forced");
  EXPECT_EQ(forced.answer.route.classifier_confidence, 0);
  EXPECT_EQ(forced.answer.timings.route_ms, 0);
  EXPECT_EQ(forced.answer.route.adapter, "describe");
  EXPECT_EQ(answerer.plan(request(kTitle, RouteAsked::kQa)).answer.route.agent, "qa");

  // Base: the classifier picks the prompt, no adapter answers.
  const Plan base = answerer.plan(request(kQuestion, RouteAsked::kBase));
  EXPECT_EQ(base.answer.route.agent, "qa");
  EXPECT_EQ(base.answer.route.adapter, "");
  EXPECT_EQ(base.answer.route.adapter_version, 0);
  EXPECT_EQ(base.answer.model, "base");
  EXPECT_EQ(base.lease, nullptr);
  EXPECT_EQ(base.request.adapter_slot, -1);
  EXPECT_NE(base.answer.response_id, question.answer.response_id);

  // The classifier's other opinion sends the same question to describe.
  EXPECT_EQ(make(4, 0).plan(request(kQuestion)).answer.route.agent, "describe");
}

TEST_F(AnswererTest, BadRequestsAreRefusedBeforeTheEngine) {
  const Answerer answerer = make();
  EXPECT_THROW(answerer.plan(request("  \n")), std::invalid_argument);
  EXPECT_THROW(answerer.plan(request(std::string(2001, 'a'))), std::invalid_argument);
  EXPECT_THROW(answerer.plan(request("caf\xc3(")), std::invalid_argument);
  EXPECT_THROW(answerer.plan(request("Dune", static_cast<RouteAsked>(42))), std::invalid_argument);
  EXPECT_THROW(answerer.plan(request("Dune", RouteAsked::kAuto, -1)), std::invalid_argument);
  Request hot = request("Dune");
  hot.generation.temperature = 11;
  EXPECT_THROW(answerer.plan(hot), std::invalid_argument);
  EXPECT_THROW(answerer.classify(""), std::invalid_argument);
}

TEST_F(AnswererTest, LongUserIdsAndSettingsThatAreNotFiniteAreRefused) {
  const Answerer answerer = make();
  Request long_id = request("Dune");
  long_id.user_id = std::string(1 << 20, 'u');  // a megabyte that would land in the log
  try {
    answerer.plan(long_id);
    ADD_FAILURE() << "a 1 MB user_id was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("user_id"), std::string::npos) << e.what();
  }
  long_id.user_id = std::string(256, 'u');
  EXPECT_NO_THROW(answerer.plan(long_id));
  for (const double bad : {std::nan(""), HUGE_VAL}) {
    Request r = request("Dune");
    r.generation.temperature = bad;
    EXPECT_THROW(answerer.plan(r), std::invalid_argument) << bad;
    r = request("Dune");
    r.generation.top_p = bad;
    EXPECT_THROW(answerer.plan(r), std::invalid_argument) << bad;
    r = request("Dune");
    r.generation.repetition_penalty = bad;
    EXPECT_THROW(answerer.plan(r), std::invalid_argument) << bad;
  }
}

TEST_F(AnswererTest, MoreTokensThanTheLimitMeansUpToTheLimit) {
  const Answerer answerer = make();
  const int limit = answerer.parts().engine->options().max_new_tokens;
  // What chat clients send by habit, and far past it: up to the limit.
  for (const int asked : {limit + 1, 4096, 1 << 30, INT32_MAX}) {
    EXPECT_EQ(
        answerer.plan(request("Dune", RouteAsked::kAuto, asked)).request.options.max_new_tokens,
        limit)
        << asked;
  }
  EXPECT_EQ(answerer.plan(request("Dune", RouteAsked::kAuto, limit)).request.options.max_new_tokens,
            limit);
  try {
    answerer.plan(request("Dune", RouteAsked::kAuto, -5));
    ADD_FAILURE() << "a negative max_new_tokens was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("generation.max_new_tokens: -5"), std::string::npos)
        << e.what();
  }
}

TEST_F(AnswererTest, ExperimentArmsAreStablePerUserAndTheBaseArmUsesNoAdapter) {
  publish("describe", 1, 1);
  publish("qa", 1, 2);
  const Answerer answerer =
      make(4, 0, experiments(Json::array({arm("base", -1), arm("tuned", 0)}), "describe"));
  std::map<std::string, int> per_arm;
  for (int i = 0; i < 20; ++i) {
    Request r = request("Blue Ceramic Mug 12 oz");
    r.user_id = "user-" + std::to_string(i);
    const Plan first = answerer.plan(r);
    const Plan again = answerer.plan(r);
    EXPECT_EQ(first.answer.experiment, "tuned-vs-base");
    EXPECT_EQ(first.answer.arm, again.answer.arm) << r.user_id;  // stable per user
    ++per_arm[first.answer.arm];
    if (first.answer.arm == "base") {
      EXPECT_EQ(first.lease, nullptr);
      EXPECT_EQ(first.answer.route.adapter, "");
      EXPECT_EQ(first.answer.model, "base");
      EXPECT_EQ(first.request.adapter_slot, -1);
    } else {
      EXPECT_EQ(first.answer.route.adapter, "describe");
      EXPECT_EQ(first.answer.model, "describe");
    }
  }
  EXPECT_GT(per_arm["base"], 0);
  EXPECT_GT(per_arm["tuned"], 0);
  // Questions are in no experiment; route base is never in one.
  EXPECT_EQ(answerer.plan(request(kQuestion, RouteAsked::kQa)).answer.experiment, "");
  EXPECT_EQ(answerer.plan(request("Dune", RouteAsked::kBase)).answer.experiment, "");
}

TEST_F(AnswererTest, AnArmPinningAVersionThatIsNotLoadedIsRefused) {
  publish("describe", 1, 1);
  const Answerer pins_v2 = make(4, 0, experiments(Json::array({arm("v2", 2)}), "describe"));
  try {
    pins_v2.plan(request("Dune"));
    FAIL() << "no throw";
  } catch (const FailedPreconditionError& e) {
    EXPECT_NE(std::string(e.what()).find("arm 'v2' pins describe/v2, but v1 is loaded"),
              std::string::npos)
        << e.what();
  }
  const Answerer pins_v1 = make(4, 0, experiments(Json::array({arm("v1", 1)}), "describe"));
  const Plan plan = pins_v1.plan(request("Dune"));
  EXPECT_EQ(plan.answer.arm, "v1");
  EXPECT_EQ(plan.answer.route.adapter_version, 1);
}

TEST_F(AnswererTest, APlanHoldsItsAdapterVersionAndAForcedRouteNeedsAnAdapter) {
  publish("describe", 1, 1);  // no qa adapter
  Answerer answerer = make(0, 4);
  const Plan v1 = answerer.plan(request("Dune", RouteAsked::kDescribe));
  ASSERT_NE(v1.lease, nullptr);
  EXPECT_EQ(v1.lease->version, 1);

  // v2 arrives: new plans use it, the first still holds v1 and runs on it.
  publish("describe", 2, 3);
  AdapterRegistry& registry = *answerer.parts().registry;
  ASSERT_EQ(registry.reload().loaded.size(), 1u);
  registry.collect();  // v1 is held: it stays attached
  EXPECT_EQ(registry.current("describe")->version, 2);
  EXPECT_EQ(answerer.plan(request("Dune", RouteAsked::kDescribe)).answer.route.adapter_version, 2);
  const Answer on_v1 = answerer.run(v1);
  EXPECT_EQ(on_v1.route.adapter_version, 1);
  EXPECT_FALSE(on_v1.finish_reason.empty());

  // No qa adapter: forcing qa is refused; auto to qa is answered by the base.
  try {
    answerer.plan(request(kQuestion, RouteAsked::kQa));
    FAIL() << "no throw";
  } catch (const FailedPreconditionError& e) {
    EXPECT_NE(std::string(e.what()).find("no 'qa' adapter is loaded (route ROUTE_QA"),
              std::string::npos)
        << e.what();
  }
  const Plan unadapted = answerer.plan(request(kQuestion));
  EXPECT_EQ(unadapted.answer.route.agent, "qa");
  EXPECT_EQ(unadapted.answer.route.adapter, "");
  EXPECT_EQ(unadapted.answer.model, "base");
}

TEST_F(AnswererTest, CompareAnswersWithTheBaseAndTheAdapterAsAskWould) {
  publish("qa", 1, 2);
  // The qa experiment's only arm is tuned: Compare leaves experiments out.
  const Answerer answerer = make(0, 4, experiments(Json::array({arm("tuned", 0)}), "qa"));
  const Comparison both = answerer.compare(request(kQuestion));
  const Answer tuned = answerer.ask(request(kQuestion));
  const Answer base = answerer.ask(request(kQuestion, RouteAsked::kBase));
  EXPECT_EQ(tuned.arm, "tuned");

  EXPECT_EQ(both.tuned.text, tuned.text);  // greedy: Ask's answer through the adapter
  EXPECT_EQ(both.base.text, base.text);    // and the base model's
  EXPECT_NE(both.tuned.text, both.base.text) << "the random adapter should change the answer";
  EXPECT_EQ(both.tuned.route.adapter, "qa");
  EXPECT_EQ(both.tuned.route.adapter_version, 1);
  EXPECT_EQ(both.tuned.model, "qa");
  EXPECT_EQ(both.base.route.adapter, "");
  EXPECT_EQ(both.base.model, "base");
  EXPECT_EQ(both.base.route.agent, both.tuned.route.agent);
  EXPECT_EQ(both.base.sources.size(), both.tuned.sources.size());
  EXPECT_EQ(both.base.usage.prompt_tokens, both.tuned.usage.prompt_tokens);
  EXPECT_NE(both.base.response_id, both.tuned.response_id);
  for (const Answer* a : {&both.base, &both.tuned}) {
    EXPECT_EQ(a->experiment, "");
    EXPECT_EQ(a->arm, "");
    EXPECT_FALSE(a->finish_reason.empty());
    EXPECT_GT(a->timings.total_ms, 0);
  }

  EXPECT_THROW(answerer.compare(request(kQuestion, RouteAsked::kBase)), std::invalid_argument);
  // A title goes to describe, which has no adapter: nothing to compare with.
  EXPECT_THROW(answerer.compare(request(kTitle)), FailedPreconditionError);
}

TEST_F(AnswererTest, TextStreamsToTheCallerAndCancellingEndsTheAnswer) {
  publish("qa", 1, 2);
  const Answerer answerer = make(0, 4);
  std::string streamed;
  RunHooks streaming;
  streaming.on_text = [&](std::string_view text) {
    streamed += text;
    return true;
  };
  const Answer answer = answerer.ask(request(kQuestion, RouteAsked::kAuto, 24), streaming);
  EXPECT_EQ(streamed, answer.text);
  EXPECT_GT(answer.usage.completion_tokens, 0);

  // The caller goes away after the first piece: the engine ends the row
  // at its next step.
  Request sampled = request(kQuestion, RouteAsked::kAuto, 256);
  sampled.generation.temperature = 1.0;
  sampled.generation.seed = 7;
  RunHooks gone;
  gone.on_text = [](std::string_view) { return false; };
  const Answer cancelled = answerer.ask(sampled, gone);
  EXPECT_EQ(cancelled.finish_reason, "cancelled");
  EXPECT_LT(cancelled.usage.completion_tokens, 256);
  // A cancellation check that says yes from the start does the same.
  RunHooks cancelling;
  cancelling.cancelled = [] { return true; };
  const Answer refused = answerer.ask(sampled, cancelling);
  EXPECT_EQ(refused.finish_reason, "cancelled");
}

// ---- conversations ----

Turn turn(TurnRole role, std::string text) {
  return {.role = role, .text = std::move(text)};
}

models::ChatMessage message(models::ChatRole role, std::string text) {
  return {.role = role, .text = std::move(text)};
}

// The message plan() throws for `r`, or "(planned)".
std::string refusal(const Answerer& answerer, const Request& r) {
  try {
    answerer.plan(r);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(planned)";
}

TEST_F(AnswererTest, HistoryLimitsAreCheckedNamingTheTurn) {
  AnswererOptions options;
  options.max_history_turns = 3;
  options.max_history_bytes = 100;
  const Answerer answerer = make(0, 4, nullptr, options);
  Request r = request(kQuestion);
  r.history = {turn(TurnRole::kUser, "a"), turn(TurnRole::kAssistant, "b"),
               turn(TurnRole::kUser, "c"), turn(TurnRole::kAssistant, "d")};
  EXPECT_EQ(refusal(answerer, r),
            "history: 4 turns, more than the limit of 3 (engine.max_history_turns)");
  r.history.pop_back();
  EXPECT_EQ(refusal(answerer, r), "(planned)");
  r.history[2].text = std::string(99, 'c');  // 1 + 1 + 99 bytes
  EXPECT_EQ(refusal(answerer, r),
            "history[2].text: the history's text reaches 101 bytes here, more than the limit of "
            "100 (engine.max_history_bytes)");
  r.history[2].text = "caf\xc3(";
  EXPECT_EQ(refusal(answerer, r), "history[2].text: not valid UTF-8");
  r.history[2] = turn(static_cast<TurnRole>(0), "c");  // ROLE_UNSPECIFIED
  EXPECT_EQ(refusal(answerer, r),
            "history[2].role: 0 is not ROLE_SYSTEM, ROLE_USER or ROLE_ASSISTANT");
  // Empty turns are fine (an answer may have been empty); a blank text is not.
  r.history[2] = turn(TurnRole::kUser, "");
  EXPECT_EQ(refusal(answerer, r), "(planned)");
  r.text = " ";
  EXPECT_EQ(refusal(answerer, r), "text: empty");
}

TEST_F(AnswererTest, EarlierTurnsComeBeforeTheTaskTurnAndTheClientSystemAfterTheTasks) {
  publish("qa", 1, 2);
  const Answerer answerer = make(0, 4);
  Request r = request(kQuestion);
  r.history = {turn(TurnRole::kSystem, "Be brief."), turn(TurnRole::kUser, "Hello"),
               turn(TurnRole::kAssistant, "Hi! Ask me about a product."),
               turn(TurnRole::kSystem, "Answer in Portuguese.")};
  const Plan plan = answerer.plan(r);
  models::ChatTurn expected = prompts::task_turn(prompts::Task::kQa, kQuestion);
  // The task's system prompt stays first and whole; the client's follows.
  expected.system += "\n\nBe brief.\n\nAnswer in Portuguese.";
  expected.history = {message(models::ChatRole::kUser, "Hello"),
                      message(models::ChatRole::kAssistant, "Hi! Ask me about a product.")};
  EXPECT_EQ(plan.request.prompt, prompt_ids(expected));
  EXPECT_EQ(plan.answer.history_turns_used, 2);  // system turns are in neither count
  EXPECT_EQ(plan.answer.history_turns_dropped, 0);
  // Route base asks with the same prompt: an A/B of the weights alone.
  r.route = RouteAsked::kBase;
  EXPECT_EQ(answerer.plan(r).request.prompt, plan.request.prompt);
  // The model answers it.
  r.route = RouteAsked::kAuto;
  const Answer answer = answerer.ask(r);
  EXPECT_FALSE(answer.finish_reason.empty());
  EXPECT_EQ(answer.usage.prompt_tokens, static_cast<int64_t>(plan.request.prompt.size()));
}

// Each qa adapter is asked in the prompt format it was trained with (its
// prompt_format.json): the closed-book qa with the question alone, the
// grounded one, when qa_adapter names it, with the product's title and
// description cut as in its training, exactly as training built its prompts.
TEST_F(AnswererTest, EachQaAdapterIsAskedInThePromptFormatItWasTrainedWith) {
  publish("qa", 1, 2);
  publish("qa_grounded", 1, 3);
  const prompts::PromptFormat grounded{
      .task = prompts::Task::kQa,
      .qa = {.grounding = prompts::Grounding::kDescription, .max_description_chars = 30},
      .end = {}};
  vitrine::testing::write_file(dir_ / "adapters/qa_grounded/v1" / prompts::kPromptFormatFile,
                               prompts::prompt_format_to_json(grounded).dump());
  const std::string question = "How many watts is the stainless steel electric kettle?";

  const Plan closed = make(0, 4).plan(request(question, RouteAsked::kQa));
  EXPECT_EQ(closed.answer.route.adapter, "qa");
  EXPECT_EQ(closed.request.prompt, prompt_ids(prompts::task_turn(prompts::Task::kQa, question)));

  AnswererOptions options;
  options.qa_adapter = "qa_grounded";
  const Answerer answerer = make(0, 4, nullptr, options);
  const Plan plan = answerer.plan(request(question, RouteAsked::kQa));
  EXPECT_EQ(plan.answer.route.adapter, "qa_grounded");
  ASSERT_TRUE(plan.answer.product_found);
  const models::ChatTurn expected = prompts::qa_turn(
      question, grounded.qa,
      prompts::Product{
          .title = "Stainless Steel Electric Kettle 1.7 Liter",
          .description = "Boils water in three minutes. Automatic shut-off. 1500 watts."});
  EXPECT_NE(expected.user.find("Description: Boils water in three minutes...."), std::string::npos);
  EXPECT_EQ(plan.request.prompt, prompt_ids(expected));
  // The base model is asked alike (an A/B of the weights), and the grounded
  // adapter answers.
  EXPECT_EQ(answerer.plan(request(question, RouteAsked::kBase)).request.prompt,
            plan.request.prompt);
  EXPECT_FALSE(answerer.ask(request(question, RouteAsked::kQa)).finish_reason.empty());
}

// An adapter whose completions ended with another token than the EOS (its
// prompt_format.json's end_token: the base's, training/end_token.h) stops
// there too, and so does the base model asked in its place; an adapter
// without one stops at the EOS alone. A version recording a token this
// tokenizer spells otherwise (trained on another base) is not loaded.
TEST_F(AnswererTest, AnswersStopAtTheEndTokenTheirAdapterLearnt) {
  publish("describe", 1, 1);
  publish("qa", 1, 2);
  prompts::PromptFormat format{
      .task = prompts::Task::kQa,
      .qa = {},
      .end = {.id = 1, .piece = "<s>", .chosen_by = "bos", .texts = 0, .mean_logprob = {}}};
  vitrine::testing::write_file(dir_ / "adapters/qa/v1" / prompts::kPromptFormatFile,
                               prompts::prompt_format_to_json(format).dump());
  const Answerer answerer = make(0, 4);
  const std::string question = "How many watts is the stainless steel electric kettle?";
  EXPECT_EQ(answerer.plan(request(question, RouteAsked::kQa)).request.options.eos_ids,
            (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(answerer.plan(request(question, RouteAsked::kBase)).request.options.eos_ids,
            (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(
      answerer.plan(request("Stainless Steel Electric Kettle 1.7 Liter", RouteAsked::kDescribe))
          .request.options.eos_ids,
      std::vector<int64_t>{2});
  EXPECT_FALSE(answerer.ask(request(question, RouteAsked::kQa)).finish_reason.empty());

  publish("qa", 2, 3);
  format.end.piece = "<|end|>";
  vitrine::testing::write_file(dir_ / "adapters/qa/v2" / prompts::kPromptFormatFile,
                               prompts::prompt_format_to_json(format).dump());
  const AdapterRegistry::ReloadResult r = answerer.parts().registry->reload();
  EXPECT_TRUE(r.loaded.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("token 1 '<|end|>', which this tokenizer spells '<s>'"),
            std::string::npos)
      << r.errors[0];
  EXPECT_EQ(answerer.parts().registry->current("qa")->version, 1);
}

TEST_F(AnswererTest, TheOldestTurnsAreLeftOutToFitThePrompt) {
  publish("qa", 1, 2);
  const std::vector<Turn> history = {
      turn(TurnRole::kSystem, "Be brief."),
      turn(TurnRole::kUser, "Tell me about the kettle, the first question of a long talk."),
      turn(TurnRole::kAssistant, "It boils water in three minutes and switches itself off."),
      turn(TurnRole::kUser, "And the second question, about its size and its colour?"),
      turn(TurnRole::kAssistant, "An answer about the size and the colour of the kettle."),
      turn(TurnRole::kUser, "A third question: what does it weigh?"),
      turn(TurnRole::kAssistant, "A third answer: a little over a kilogram."),
  };
  // The prompts the answerer may choose between, by where the kept turns start.
  models::ChatTurn base = prompts::task_turn(prompts::Task::kQa, kQuestion);
  base.system += "\n\nBe brief.";
  auto kept_from = [&](size_t first) {  // first: an index into the 6 messages
    models::ChatTurn t = base;
    for (size_t i = 1 + first; i < history.size(); ++i) {
      t.history.push_back(message(history[i].role == TurnRole::kUser ? models::ChatRole::kUser
                                                                     : models::ChatRole::kAssistant,
                                  history[i].text));
    }
    return prompt_ids(t);
  };
  const std::vector<int64_t> all = kept_from(0), from_third = kept_from(4), none = kept_from(6);
  ASSERT_GT(all.size(), kept_from(3).size());
  ASSERT_GT(kept_from(3).size(), from_third.size());

  // A limit that the prompt from the second answer on would fit: an answer
  // without its question is never kept, so the third exchange alone is.
  models::EngineOptions engine;
  engine.max_prompt_tokens = static_cast<int>(kept_from(3).size());
  Request r = request(kQuestion);
  r.history = history;
  const Plan plan = make(0, 4, nullptr, {}, engine).plan(r);
  EXPECT_EQ(plan.request.prompt, from_third);
  EXPECT_EQ(plan.answer.history_turns_dropped, 4);
  EXPECT_EQ(plan.answer.history_turns_used, 2);

  // Room for everything: nothing left out.
  engine.max_prompt_tokens = static_cast<int>(all.size());
  const Plan whole = make(0, 4, nullptr, {}, engine).plan(r);
  EXPECT_EQ(whole.request.prompt, all);
  EXPECT_EQ(whole.answer.history_turns_dropped, 0);

  // Room for the current turn alone: every earlier turn goes, the system
  // prompt stays; too little even for that, and the engine refuses it.
  engine.max_prompt_tokens = static_cast<int>(none.size());
  const Answerer tight = make(0, 4, nullptr, {}, engine);
  const Plan bare = tight.plan(r);
  EXPECT_EQ(bare.request.prompt, none);
  EXPECT_EQ(bare.answer.history_turns_dropped, 6);
  EXPECT_EQ(bare.answer.history_turns_used, 0);
  engine.max_prompt_tokens = static_cast<int>(none.size()) - 1;
  EXPECT_THROW(make(0, 4, nullptr, {}, engine).ask(r), std::invalid_argument);
}

TEST_F(AnswererTest, AFollowUpIsAnsweredAboutTheEarlierProductAndSaysSo) {
  publish("describe", 1, 1);
  publish("qa", 1, 2);
  const Answerer answerer = make(0, 4);  // the classifier says qa
  Request r = request("and does it switch itself off?");
  r.history = {turn(TurnRole::kSystem, "Be brief."),
               turn(TurnRole::kUser, "How many watts is the stainless steel electric kettle?"),
               turn(TurnRole::kAssistant, "1500 watts.")};
  const Answer answer = answerer.ask(r);
  EXPECT_EQ(answer.route.agent, "qa");
  EXPECT_TRUE(answer.product_found);
  ASSERT_EQ(answer.sources.size(), 1u);
  EXPECT_EQ(answer.sources[0].uid, "B00KETTLE1");
  EXPECT_EQ(answer.sources[0].evidence, agents::SourceEvidence::kEarlierTurn);
  EXPECT_EQ(answer.sources[0].history_index, 1);  // the request's index, system turn counted
  EXPECT_EQ(answer.history_turns_used, 2);
  EXPECT_FALSE(answer.finish_reason.empty());

  // Without the conversation the question is about no known product.
  EXPECT_FALSE(answerer.plan(request("and does it switch itself off?")).answer.product_found);
  // A title is described as it stands: the describe agent resolves nothing.
  r.route = RouteAsked::kDescribe;
  EXPECT_TRUE(answerer.plan(r).answer.sources.empty());
}

// ---- unknown products ----

// A kettle the hand-made catalogue does not have: its own kettle is the
// closest title, below the bar that makes it the product.
constexpr const char* kUnknownKettle = "Does the Zorblax 9000 travel kettle have a warranty?";
constexpr const char* kUnknownKettlePt = "A chaleira Zorblax 9000 tem garantia?";
constexpr const char* kKnownKettle = "How many watts is the stainless steel electric kettle?";

using agents::AnswerLanguage;
using agents::unknown_product_text;

TEST_F(AnswererTest, AQuestionAboutNoProductIsSaidInItsLanguageWithoutAModel) {
  publish("describe", 1, 1);
  publish("qa", 1, 2);
  unknown_ = agents::UnknownProductOptions{};  // say, as shipped
  const Answerer answerer = make(0, 4, experiments(Json::array({arm("tuned", 0)}), "qa"));
  const Plan plan = answerer.plan(request(kUnknownKettle));
  EXPECT_EQ(plan.answer.route.agent, "qa");
  EXPECT_FALSE(plan.answer.product_found);
  EXPECT_TRUE(plan.answer.sources.empty());
  ASSERT_FALSE(plan.answer.closest.empty());
  EXPECT_EQ(plan.answer.closest[0].uid, "B00KETTLE1");
  EXPECT_EQ(plan.fixed_text, unknown_product_text(AnswerLanguage::kEnglish, plan.answer.closest));
  EXPECT_NE(plan.fixed_text.find("\"Stainless Steel Electric Kettle 1.7 Liter\""),
            std::string::npos);
  // No model: no adapter, no prompt, no experiment arm.
  EXPECT_EQ(plan.lease, nullptr);
  EXPECT_EQ(plan.answer.model, kNoModel);
  EXPECT_EQ(plan.answer.route.adapter, "");
  EXPECT_EQ(plan.request.adapter_slot, -1);
  EXPECT_TRUE(plan.request.prompt.empty());
  EXPECT_EQ(plan.answer.experiment, "");
  EXPECT_EQ(plan.answer.arm, "");

  // Streamed, it comes in one piece, and it ends by itself with no tokens.
  std::vector<std::string> pieces;
  RunHooks streaming;
  streaming.on_text = [&](std::string_view text) {
    pieces.emplace_back(text);
    return true;
  };
  const Answer answer = answerer.ask(request(kUnknownKettle), streaming);
  EXPECT_EQ(pieces, std::vector<std::string>{plan.fixed_text});
  EXPECT_EQ(answer.text, plan.fixed_text);
  EXPECT_EQ(answer.finish_reason, "stop");
  EXPECT_EQ(answer.usage.prompt_tokens, 0);
  EXPECT_EQ(answer.usage.completion_tokens, 0);
  EXPECT_FALSE(answer.product_found);

  // Asked in Portuguese, said in Portuguese.
  const Answer pt = answerer.ask(request(kUnknownKettlePt));
  EXPECT_FALSE(pt.product_found);
  EXPECT_EQ(pt.text, unknown_product_text(AnswerLanguage::kPortuguese, pt.closest));
  EXPECT_EQ(pt.text.rfind("Não conheço esse produto:", 0), 0u) << pt.text;
  EXPECT_EQ(pt.finish_reason, "stop");
  // Nothing close: no titles offered.
  const Answer far = answerer.ask(request("What is the battery life of the zq-9000 hyperdrive?"));
  EXPECT_TRUE(far.closest.empty());
  EXPECT_EQ(far.text, unknown_product_text(AnswerLanguage::kEnglish, {}));
  // Route base and a forced qa route say it too: no model writes from nothing.
  EXPECT_EQ(answerer.plan(request(kUnknownKettle, RouteAsked::kBase)).fixed_text, plan.fixed_text);
  EXPECT_EQ(answerer.plan(request(kUnknownKettle, RouteAsked::kQa)).fixed_text, plan.fixed_text);
  // A caller already gone: cancelled.
  RunHooks gone;
  gone.on_text = [](std::string_view) { return false; };
  EXPECT_EQ(answerer.ask(request(kUnknownKettle), gone).finish_reason, "cancelled");

  // A question that names a product is the model's, as before.
  const Answer known = answerer.ask(request(kKnownKettle));
  EXPECT_TRUE(known.product_found);
  EXPECT_EQ(known.model, "qa");
  EXPECT_EQ(known.arm, "tuned");
  EXPECT_TRUE(known.closest.empty());
  EXPECT_GT(known.usage.prompt_tokens, 0);
  // And a title is described as it stands, known or not.
  const Plan title = answerer.plan(request("Zorblax 9000 Travel Kettle", RouteAsked::kDescribe));
  EXPECT_TRUE(title.fixed_text.empty());
  EXPECT_EQ(title.answer.model, "describe");
  EXPECT_FALSE(title.answer.product_found);
  EXPECT_TRUE(title.answer.closest.empty());
}

TEST_F(AnswererTest, GenerateLetsTheModelAnswerAndStillOffersTheClosestTitles) {
  publish("qa", 1, 2);
  const Answer unconfigured = make(0, 4).ask(request(kUnknownKettle));  // no agent: as before
  unknown_ = agents::UnknownProductOptions{.answer = agents::UnknownProduct::kGenerate};
  const Answer generated = make(0, 4).ask(request(kUnknownKettle));
  EXPECT_FALSE(generated.product_found);
  EXPECT_TRUE(generated.sources.empty());
  EXPECT_EQ(generated.model, "qa");
  EXPECT_EQ(generated.route.adapter, "qa");
  EXPECT_GT(generated.usage.prompt_tokens, 0);
  EXPECT_GT(generated.usage.completion_tokens, 0);
  EXPECT_EQ(generated.text, unconfigured.text);  // greedy: the model's answer, unchanged
  EXPECT_EQ(generated.text.find("I don't know that product"), std::string::npos);
  ASSERT_FALSE(generated.closest.empty());
  EXPECT_EQ(generated.closest[0].uid, "B00KETTLE1");
  EXPECT_TRUE(unconfigured.closest.empty());
}

TEST_F(AnswererTest, AFollowUpAfterAKnownProductIsAnsweredAndAloneItIsSaidUnknown) {
  publish("qa", 1, 2);
  unknown_ = agents::UnknownProductOptions{};
  const Answerer answerer = make(0, 4);
  for (const char* follow_up : {"and who wrote it?", "e quem escreveu?"}) {
    Request r = request(follow_up);
    r.history = {turn(TurnRole::kUser, kKnownKettle), turn(TurnRole::kAssistant, "1500 watts.")};
    const Answer answer = answerer.ask(r);
    EXPECT_TRUE(answer.product_found) << follow_up;
    ASSERT_EQ(answer.sources.size(), 1u) << follow_up;
    EXPECT_EQ(answer.sources[0].uid, "B00KETTLE1");
    EXPECT_EQ(answer.sources[0].evidence, agents::SourceEvidence::kEarlierTurn);
    EXPECT_EQ(answer.model, "qa");
    EXPECT_GT(answer.usage.completion_tokens, 0);
    EXPECT_TRUE(answer.closest.empty());
    // Earlier turns that name no product either: said unknown.
    r.history = {turn(TurnRole::kUser, "Hello"), turn(TurnRole::kAssistant, "Hi!")};
    EXPECT_EQ(answerer.ask(r).model, kNoModel) << follow_up;
  }
  // After the answer that the product is unknown, a follow-up is still about
  // that product, not about a title the answer offered.
  const std::string said = answerer.ask(request(kUnknownKettle)).text;
  ASSERT_NE(said.find("Stainless Steel Electric Kettle 1.7 Liter"), std::string::npos);
  Request after = request("and who wrote it?");
  after.history = {turn(TurnRole::kUser, kUnknownKettle), turn(TurnRole::kAssistant, said)};
  EXPECT_FALSE(answerer.ask(after).product_found);
  // The same words from the user name the kettle: only the daemon's own
  // answer is left out of the search.
  after.history[1].role = TurnRole::kUser;
  EXPECT_TRUE(answerer.ask(after).product_found);
  // Alone, in its own language.
  EXPECT_EQ(answerer.ask(request("and who wrote it?")).text,
            unknown_product_text(AnswerLanguage::kEnglish, {}));
  EXPECT_EQ(answerer.ask(request("e quem escreveu?")).text,
            unknown_product_text(AnswerLanguage::kPortuguese, {}));
}

TEST_F(AnswererTest, CompareGivesBothSidesTheSaidAnswerWithoutNeedingAnAdapter) {
  unknown_ = agents::UnknownProductOptions{};
  const Answerer answerer = make(0, 4);  // no adapter published
  const Comparison both = answerer.compare(request(kUnknownKettle));
  const std::string said = answerer.ask(request(kUnknownKettle)).text;
  for (const Answer* a : {&both.base, &both.tuned}) {
    EXPECT_EQ(a->text, said);
    EXPECT_EQ(a->finish_reason, "stop");
    EXPECT_EQ(a->model, kNoModel);
    EXPECT_FALSE(a->product_found);
    EXPECT_FALSE(a->closest.empty());
  }
  EXPECT_NE(both.base.response_id, both.tuned.response_id);
  // A known product still needs the adapter to compare with.
  EXPECT_THROW(answerer.compare(request(kKnownKettle)), FailedPreconditionError);
}

}  // namespace
}  // namespace vitrine::router
