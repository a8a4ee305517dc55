// Text generation with one Llama and its adapters: greedy or sampled, with a
// per-token callback for streaming, stop ids and stop strings, cancellation.
//
// A fixed batch of requests decodes together (generate() is a batch of one);
// admitting and retiring requests while a batch runs (continuous batching)
// is the serving engine's job. Not goals: beam search, speculative decoding.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/llama.h"
#include "models/tokenizer/tokenizer.h"

namespace vitrine::models {

struct GenerationOptions {
  int max_new_tokens = 128;  // cap on generated tokens; bounds latency and memory
  double temperature = 0.0;  // 0 = greedy (argmax); higher = more varied, less faithful
  int top_k = 0;             // sample among the k most likely tokens; 0 = all
  double top_p = 1.0;        // nucleus: the smallest set holding this probability; 1 = all
  double repetition_penalty =
      1.0;                       // > 1 discourages tokens already seen (as transformers applies it)
  uint64_t seed = 0;             // sampling seed: the same seed gives the same text
  std::vector<int64_t> eos_ids;  // stop on any of these ids (not part of the text)
  std::vector<std::string>
      stop_strings;  // stop when the text ends with one (removed from the text)
};

struct GenerationResult {
  std::vector<int64_t> ids;   // generated ids (stop id excluded)
  std::string text;           // decoded generated text (stop string excluded)
  std::string finish_reason;  // "stop" (eos or stop string), "length" or "cancelled"
};

// Called with each new id and the text it completes (possibly empty while a
// UTF-8 character is incomplete); return false to cancel.
using TokenCallback = std::function<bool(int64_t id, std::string_view text)>;

GenerationResult generate(LlamaForCausalLM& model, const Tokenizer& tokenizer,
                          const std::vector<int64_t>& prompt, const GenerationOptions& options,
                          int adapter_slot = -1, const TokenCallback& on_token = {});

// One request of a batch: its prompt and adapter slot (-1 = base).
struct BatchRequest {
  std::vector<int64_t> prompt;
  int adapter_slot = -1;
};

// Generates for several requests in one forward per step: prompts of
// different lengths (left-padded, never attended to), a different adapter
// per row, each row stopping on its own eos, stop string or length, and
// each row sampled with its own generator seeded with options.seed, so a
// row gives exactly what generate() gives it alone. `on_token` gets the row
// index; returning false cancels that row only.
using BatchTokenCallback = std::function<bool(size_t row, int64_t id, std::string_view text)>;
std::vector<GenerationResult> generate_batch(LlamaForCausalLM& model, const Tokenizer& tokenizer,
                                             const std::vector<BatchRequest>& requests,
                                             const GenerationOptions& options,
                                             const BatchTokenCallback& on_token = {});

// The same without a tokenizer, for models that have none (the benchmark's
// random checkpoints): ids only, texts empty, stop strings refused.
std::vector<GenerationResult> generate_batch_ids(LlamaForCausalLM& model,
                                                 const std::vector<BatchRequest>& requests,
                                                 const GenerationOptions& options,
                                                 const BatchTokenCallback& on_token = {});

// One sequence being generated, token by token: what it has seen, its own
// sampler (seeded with options.seed), its streaming decoder and its stop
// rules. generate_batch and the serving engine (models/engine.h) both drive
// their rows through it, so a row behaves the same in either.
class Sequence {
 public:
  // `tokenizer` may be null (ids only; then stop strings are refused).
  Sequence(const std::vector<int64_t>& prompt, const GenerationOptions& options,
           const Tokenizer* tokenizer);

  // Picks the next id from this sequence's last-position logits [vocab] and
  // takes it: an eos id ends the sequence ("stop"); otherwise the id and its
  // text are appended, a stop string ends it ("stop", the string removed),
  // on_token is called (false ends it: "cancelled"), and reaching
  // max_new_tokens ends it ("length"). Returns the id picked.
  int64_t advance(const at::Tensor& logits, const TokenCallback& on_token = {});
  // Ends it now with `reason` (e.g. "cancelled", "deadline").
  void finish(const char* reason);

  bool done() const { return done_; }
  // The id to feed the next step: the last one seen.
  int64_t last_id() const { return seen_.back(); }
  const GenerationResult& result() const { return result_; }
  GenerationResult take_result() { return std::move(result_); }

 private:
  GenerationOptions options_;
  at::Generator generator_;
  std::vector<int64_t> seen_;
  std::unique_ptr<StreamDecoder> decoder_;
  GenerationResult result_;
  bool done_ = false;
};

// Throws std::invalid_argument naming the first option out of its range:
// temperature and repetition_penalty must be finite (temperature >= 0,
// penalty > 0), top_p in (0, 1], top_k and max_new_tokens >= 0.
// Temperatures below the smallest normal float (~1.2e-38) decode greedily.
void validate_generation_options(const GenerationOptions& options);

// The next id from last-position logits [vocab] under `options` (exposed for
// tests). Throws std::runtime_error when the logits hold NaN: the request
// cannot be answered, and whoever drives it ends it with that error.
int64_t pick_next(const at::Tensor& logits, const GenerationOptions& options,
                  const std::vector<int64_t>& seen, at::Generator& generator);

}  // namespace vitrine::models
