// The serving engine: continuous batching that gives every request exactly
// what it would get alone, a bounded queue, cancellation and deadlines,
// and model changes between steps — each on every weight format the daemon
// serves (f32, bf16, int8: the suites are parametrized by BaseDtype).
#include "models/engine.h"

#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/errors.h"
#include "models/peft_adapter.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct Fixture {
  LlamaForCausalLM model{nullptr};
  std::shared_ptr<const Tokenizer> tokenizer;
  std::vector<std::vector<int64_t>> prompts, want;
  std::vector<int> slots;
};

// The mha-untied fixture with its PEFT adapter in slot 0, and three
// requests (lengths 1, 17 and 120; adapter, base, adapter) with the greedy
// ids each gets alone: transformers and PEFT's in float32 (checked here),
// greedy_generate's on the same model in bf16 and int8, whose products
// round differently.
std::optional<Fixture> transformers_fixture(WeightLayout layout = WeightLayout::kCheckpoint,
                                            BaseDtype weights = BaseDtype::kF32) {
  const fs::path dir = testing::shared_path("fixtures/hf-llama/mha-untied");
  const fs::path stories = testing::shared_path("models/stories260K-hf");
  if (!fs::exists(dir) || !fs::exists(stories)) return std::nullopt;
  std::ifstream in(dir / "expected.json");
  const auto expected = nlohmann::json::parse(in);
  Fixture f;
  // int8 is a serving format: packed only.
  if (weights == BaseDtype::kInt8) layout = WeightLayout::kPacked;
  f.model = load_llama(dir, "cpu", layout, weights);
  attach_adapter(f.model, load_peft_adapter(dir / "adapter"), 0);
  f.tokenizer = load_tokenizer(stories);  // any tokenizer: ids are compared
  for (const auto& [index, slot] : std::vector<std::pair<int, int>>{{0, 0}, {1, -1}, {2, 0}}) {
    const auto& seq = expected["sequences"][index];
    f.prompts.push_back(seq["ids"].get<std::vector<int64_t>>());
    f.slots.push_back(slot);
    const auto reference = (slot < 0 ? seq : expected["adapter"]["sequences"][index])["greedy"]
                               .get<std::vector<int64_t>>();
    const auto alone =
        greedy_generate(f.model, f.prompts.back(), static_cast<int>(reference.size()), slot);
    if (weights == BaseDtype::kF32) {
      EXPECT_EQ(alone, reference) << "sequence " << index;
    }
    f.want.push_back(alone);
  }
  return f;
}

// Each test below runs on every weight format.
class EngineOnWeights : public ::testing::TestWithParam<BaseDtype> {};

INSTANTIATE_TEST_SUITE_P(Formats, EngineOnWeights,
                         ::testing::Values(BaseDtype::kF32, BaseDtype::kBf16, BaseDtype::kInt8),
                         [](const ::testing::TestParamInfo<BaseDtype>& info) {
                           return std::string(base_dtype_name(info.param));
                         });

TEST_P(EngineOnWeights, StaggeredRequestsEachGetWhatTheyGetAlone) {
  // The daemon's layout (packed) at 8 rows, the checkpoint's at 2.
  for (const auto& [max_batch, layout] :
       {std::pair{8, WeightLayout::kPacked}, std::pair{2, WeightLayout::kCheckpoint}}) {
    std::optional<Fixture> f = transformers_fixture(layout, GetParam());
    if (!f) GTEST_SKIP() << "../shared fixtures not found";
    Engine engine(f->model, f->tokenizer, {.max_batch = max_batch});
    // Each request joins while the earlier ones are decoding (after their
    // third token), so its prefill is merged into a running batch; with
    // max_batch 2 the third waits for a free row.
    std::vector<std::future<EngineResult>> results;
    std::vector<std::shared_ptr<std::atomic<int>>> counts;
    for (size_t i = 0; i < f->prompts.size(); ++i) {
      if (i > 0) {
        for (int spin = 0; spin < 2000 && counts.back()->load() < 3; ++spin) {
          std::this_thread::sleep_for(1ms);
        }
      }
      auto count = std::make_shared<std::atomic<int>>(0);
      counts.push_back(count);
      EngineRequest r;
      r.prompt = f->prompts[i];
      r.adapter_slot = f->slots[i];
      r.options.max_new_tokens = 16;
      r.on_token = [count](int64_t, std::string_view) {
        ++*count;
        std::this_thread::sleep_for(2ms);  // slow enough that the requests overlap
        return true;
      };
      results.push_back(engine.submit(std::move(r)));
    }
    for (size_t i = 0; i < results.size(); ++i) {
      const EngineResult r = results[i].get();
      EXPECT_EQ(r.generation.ids, f->want[i]) << "request " << i << ", max_batch " << max_batch;
      EXPECT_EQ(r.generation.finish_reason, "length");
      EXPECT_EQ(r.timings.generated_tokens, 16);
      EXPECT_EQ(r.timings.prompt_tokens, static_cast<int64_t>(f->prompts[i].size()));
      EXPECT_LE(r.timings.first_token_ms, r.timings.total_ms);
    }
    const EngineStats stats = engine.stats();
    EXPECT_EQ(stats.admitted, 3);
    EXPECT_EQ(stats.tokens_generated, 48);
    EXPECT_LT(stats.steps, 45) << "the rows were never batched together";
    EXPECT_EQ(stats.running, 0);
  }
}

TEST_P(EngineOnWeights, ABurstPrefillsTogetherAndEachGetsWhatItGetsAlone) {
  std::optional<Fixture> f = transformers_fixture(WeightLayout::kPacked, GetParam());
  if (!f) GTEST_SKIP() << "../shared fixtures not found";
  Engine engine(f->model, f->tokenizer, {.max_batch = 8});
  // Submitted while the scheduler runs a model change, the three requests
  // (prompts of 1, 17 and 120 ids; adapter, base, adapter) are admitted in
  // one round: one left-padded prefill for all.
  std::vector<std::future<EngineResult>> results;
  engine.update_model([&](LlamaForCausalLM&) {
    for (size_t i = 0; i < f->prompts.size(); ++i) {
      EngineRequest r;
      r.prompt = f->prompts[i];
      r.adapter_slot = f->slots[i];
      r.options.max_new_tokens = 16;
      results.push_back(engine.submit(std::move(r)));
    }
  });
  for (size_t i = 0; i < results.size(); ++i) {
    const EngineResult r = results[i].get();
    EXPECT_EQ(r.generation.ids, f->want[i]) << "request " << i;
    EXPECT_EQ(r.generation.finish_reason, "length");
  }
  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.admitted, 3);
  EXPECT_EQ(stats.steps, 15) << "one prefill for the three, then 15 steps together";
}

TEST_P(EngineOnWeights, SampledTextStreamsAndEqualsGenerateAlone) {
  const fs::path dir = testing::shared_path("models/stories260K-hf");
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not found";
  LlamaForCausalLM model = load_llama(dir, "cpu", WeightLayout::kPacked, GetParam());
  std::shared_ptr<const Tokenizer> tokenizer = load_tokenizer(dir);
  const std::vector<std::string> texts = {"Once upon a time", "The little dog",
                                          "Lily and Ben went to the park. They saw"};
  std::vector<GenerationOptions> options(texts.size());
  std::vector<GenerationResult> alone;
  for (size_t i = 0; i < texts.size(); ++i) {
    options[i].max_new_tokens = 20 + 10 * static_cast<int>(i);
    options[i].temperature = 0.8;
    options[i].top_p = 0.9;
    options[i].seed = 7 + i;
    options[i].stop_strings = {"."};
    const auto ids = tokenizer->encode(texts[i], true);
    alone.push_back(generate(model, *tokenizer, {ids.begin(), ids.end()}, options[i]));
  }
  Engine engine(model, tokenizer);
  std::vector<std::future<EngineResult>> futures;
  std::vector<std::shared_ptr<std::string>> streamed;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tokenizer->encode(texts[i], true);
    auto text = std::make_shared<std::string>();
    streamed.push_back(text);
    EngineRequest r;
    r.prompt.assign(ids.begin(), ids.end());
    r.options = options[i];
    r.on_token = [text](int64_t, std::string_view piece) {
      *text += piece;
      return true;
    };
    futures.push_back(engine.submit(std::move(r)));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    const EngineResult r = futures[i].get();
    EXPECT_EQ(r.generation.ids, alone[i].ids) << texts[i];
    EXPECT_EQ(r.generation.text, alone[i].text) << texts[i];
    EXPECT_EQ(r.generation.finish_reason, alone[i].finish_reason) << texts[i];
    EXPECT_EQ(*streamed[i], r.generation.text) << texts[i];
  }
}

TEST_P(EngineOnWeights, TheQueueIsBoundedAndCancellationAndDeadlinesFreeTheRow) {
  std::optional<Fixture> f = transformers_fixture(WeightLayout::kPacked, GetParam());
  if (!f) GTEST_SKIP() << "../shared fixtures not found";
  Engine engine(f->model, f->tokenizer,
                {.max_batch = 1, .max_queue = 2, .max_prompt_tokens = 200, .max_new_tokens = 400});
  auto request = [&](int new_tokens) {
    EngineRequest r;
    r.prompt = f->prompts[1];
    r.options.max_new_tokens = new_tokens;
    r.cancelled = std::make_shared<std::atomic<bool>>(false);
    return r;
  };
  // A long request holds the only row; two wait; a fourth is refused. Its
  // first token waits for the test to let it go: free to run, a small
  // model could end it (at its end token, or at 400 tokens) while the
  // queue is being checked, and the row would take a waiting request.
  EngineRequest long_one = request(400);
  auto long_cancel = long_one.cancelled;
  std::atomic<int> long_tokens{0};
  std::atomic<bool> hold{true};
  long_one.on_token = [&](int64_t, std::string_view) {
    ++long_tokens;
    while (hold.load()) std::this_thread::sleep_for(1ms);
    return true;
  };
  auto first = engine.submit(std::move(long_one));
  for (int spin = 0; spin < 2000 && long_tokens.load() == 0; ++spin)
    std::this_thread::sleep_for(1ms);
  EngineRequest expired = request(8);
  expired.deadline = std::chrono::steady_clock::now();
  auto second = engine.submit(std::move(expired));
  auto third = engine.submit(request(4));
  EXPECT_EQ(engine.stats().queued, 2);
  EXPECT_THROW(engine.submit(request(4)), ResourceExhaustedError);
  EngineRequest too_long = request(4);
  too_long.prompt.assign(201, 1);
  EXPECT_THROW(engine.submit(std::move(too_long)), std::invalid_argument);

  long_cancel->store(true);
  hold.store(false);
  const EngineResult cancelled = first.get();
  EXPECT_EQ(cancelled.generation.finish_reason, "cancelled");
  EXPECT_LT(cancelled.generation.ids.size(), 400u);
  const EngineResult late = second.get();
  EXPECT_EQ(late.generation.finish_reason, "deadline");
  EXPECT_TRUE(late.generation.ids.empty());
  const EngineResult ran = third.get();
  EXPECT_EQ(ran.generation.finish_reason, "length");
  EXPECT_EQ(ran.generation.ids, std::vector<int64_t>(f->want[1].begin(), f->want[1].begin() + 4));
}

TEST_P(EngineOnWeights, ModelChangesRunBetweenStepsAndSlotsInUseAreKnown) {
  std::optional<Fixture> f = transformers_fixture(WeightLayout::kPacked, GetParam());
  if (!f) GTEST_SKIP() << "../shared fixtures not found";
  const PeftAdapter adapter =
      load_peft_adapter(testing::shared_path("fixtures/hf-llama/mha-untied/adapter"));
  Engine engine(f->model, f->tokenizer, {.max_batch = 4});
  std::atomic<bool> release{false};
  EngineRequest r;
  r.prompt = f->prompts[0];
  r.adapter_slot = 0;
  r.options.max_new_tokens = 16;
  r.on_token = [&](int64_t, std::string_view) {
    while (!release.load()) std::this_thread::sleep_for(1ms);
    return true;
  };
  auto running = engine.submit(std::move(r));
  for (int spin = 0; spin < 2000 && engine.stats().running == 0; ++spin) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(engine.slots_in_use(), std::set<int>{0});
  release = true;
  // A new version in slot 1 while slot 0's request decodes.
  engine.update_model([&](LlamaForCausalLM& model) { attach_adapter(model, adapter, 1); });
  EngineRequest on_new;
  on_new.prompt = f->prompts[2];
  on_new.adapter_slot = 1;
  on_new.options.max_new_tokens = 16;
  EXPECT_EQ(engine.submit(std::move(on_new)).get().generation.ids, f->want[2]);
  EXPECT_EQ(running.get().generation.ids, f->want[0]);
  EXPECT_TRUE(engine.slots_in_use().empty());
  EXPECT_THROW(engine.update_model([](LlamaForCausalLM&) { throw std::runtime_error("no"); }),
               std::runtime_error);
}

TEST_P(EngineOnWeights, ARequestWhoseLogitsAreNotFiniteFailsAloneAndTheEngineGoesOn) {
  std::optional<Fixture> f = transformers_fixture(WeightLayout::kPacked, GetParam());
  if (!f) GTEST_SKIP() << "../shared fixtures not found";
  // Slot 1: the fixture's adapter with NaN in one B (as a damaged file
  // would hold, attached without the loader's check).
  PeftAdapter broken =
      load_peft_adapter(testing::shared_path("fixtures/hf-llama/mha-untied/adapter"));
  broken.modules.begin()->second.b[0][0] = std::numeric_limits<float>::quiet_NaN();
  attach_adapter(f->model, broken, 1);
  Engine engine(f->model, f->tokenizer, {.max_batch = 4});
  auto request = [&](int slot, double temperature) {
    EngineRequest r;
    r.prompt = f->prompts[1];
    r.adapter_slot = slot;
    r.options.max_new_tokens = 12;
    r.options.temperature = temperature;
    return r;
  };
  // Sampled and greedy: the poisoned request fails with the sampler's error,
  // and the engine answers the next one as ever. (Run one after the other:
  // in one batch the stacked adapters' product would spread the NaN to every
  // row on an adapter, which is why loading refuses such weights.)
  for (const double temperature : {0.8, 0.0}) {
    try {
      engine.submit(request(1, temperature)).get();
      ADD_FAILURE() << "a NaN adapter answered at temperature " << temperature;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
    }
    const EngineResult ok = engine.submit(request(-1, 0.0)).get();
    EXPECT_EQ(ok.generation.ids, std::vector<int64_t>(f->want[1].begin(), f->want[1].begin() + 12));
  }
  // Settings out of range are refused at submission, before the queue.
  EngineRequest bad = request(-1, std::numeric_limits<double>::quiet_NaN());
  EXPECT_THROW(engine.submit(std::move(bad)), std::invalid_argument);
  EXPECT_EQ(engine.submit(request(-1, 0.0)).get().generation.finish_reason, "length");
}

}  // namespace
}  // namespace vitrine::models
