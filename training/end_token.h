// Which token a completion ends with in training, and so where generation
// with the adapter stops (prompts::EndToken, recorded in its
// prompt_format.json).
//
// The tokenizer's EOS is the usual answer, but not every base learnt to
// predict it: llama2.c trained its models (stories260K among them) on
// stories each after a BOS, so at a story's end they predict BOS, and EOS
// sits 20 nats below it, where LoRA on the projections cannot lift it in a
// few hundred steps. Trained to end with EOS anyway, such an adapter never
// stops by itself. `auto` measures instead: the base's mean log-probability
// of each candidate (the EOS ids and BOS) right after complete training
// completions, and keeps EOS unless another candidate is clearly likelier.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/llama.h"
#include "models/tokenizer/tokenizer.h"
#include "prompts/prompt_format.h"
#include "training/examples.h"

namespace vitrine::training {

enum class EndTokenSetting { kAuto, kEos, kBos };

// "auto", "eos" or "bos"; throws std::invalid_argument naming the value.
EndTokenSetting parse_end_token_setting(std::string_view text);

// How much likelier (mean log-probability, nats) than EOS another candidate
// must be for auto to take it: e^2, about 7 times.
inline constexpr double kEndTokenMargin = 2.0;

// Completions measured at most: enough for a stable mean (the gap it
// decides on is tens of nats), under a minute of forwards on a 1B base.
inline constexpr size_t kEndTokenTexts = 16;

// The token completions end with. `examples`: complete ones (Example::ended)
// ending with `tokenizer`'s first EOS id, as load_examples makes them with
// no end token recorded; only auto reads them, with the base alone (no
// adapter) and no gradient. Throws std::invalid_argument when the setting
// names a token the tokenizer does not have.
prompts::EndToken choose_end_token(models::LlamaForCausalLM& model,
                                   const models::Tokenizer& tokenizer,
                                   const std::vector<Example>& examples, EndTokenSetting setting);

// "'<s>' (id 1; auto: mean log-probability at the end of 32 completions
// '<s>' -3.12, '</s>' -23.80)", for the run's log.
std::string describe(const prompts::EndToken& end);

}  // namespace vitrine::training
