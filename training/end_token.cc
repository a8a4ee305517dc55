#include "training/end_token.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace vitrine::training {

EndTokenSetting parse_end_token_setting(std::string_view text) {
  if (text == "auto") return EndTokenSetting::kAuto;
  if (text == "eos") return EndTokenSetting::kEos;
  if (text == "bos") return EndTokenSetting::kBos;
  throw std::invalid_argument(
      fmt::format("end_token: '{}' is not one of auto, eos, bos", std::string(text)));
}

namespace {

prompts::EndToken named(const models::Tokenizer& tokenizer, int32_t id, const char* chosen_by) {
  return {.id = id,
          .piece = tokenizer.id_to_piece(id),
          .chosen_by = chosen_by,
          .texts = 0,
          .mean_logprob = {}};
}

// The base's mean log-probability of each of `candidates` right after the
// completions of `examples` that ended (their end token dropped).
std::vector<double> mean_logprobs(models::LlamaForCausalLM& model,
                                  const std::vector<Example>& examples,
                                  const std::vector<int32_t>& candidates, int64_t& texts) {
  at::NoGradGuard no_grad;
  const at::Tensor index = at::tensor(std::vector<int64_t>(candidates.begin(), candidates.end()));
  at::Tensor sum = at::zeros({static_cast<int64_t>(candidates.size())}, at::kDouble);
  texts = 0;
  for (const Example& ex : examples) {
    if (!ex.ended || ex.ids.size() < 2) continue;
    const std::vector<int64_t> ids(ex.ids.begin(), ex.ids.end() - 1);
    const at::Tensor input =
        at::tensor(ids, at::kLong).view({1, -1}).to(model->parameters().front().device());
    const at::Tensor logits = model->forward_last(input).to(at::kCPU, at::kDouble);
    sum += at::log_softmax(logits[0], -1).index_select(0, index);
    if (++texts == static_cast<int64_t>(kEndTokenTexts)) break;
  }
  std::vector<double> out(candidates.size(), 0);
  if (texts == 0) return out;
  for (size_t i = 0; i < candidates.size(); ++i) {
    out[i] = sum[static_cast<int64_t>(i)].item<double>() / static_cast<double>(texts);
  }
  return out;
}

}  // namespace

prompts::EndToken choose_end_token(models::LlamaForCausalLM& model,
                                   const models::Tokenizer& tokenizer,
                                   const std::vector<Example>& examples, EndTokenSetting setting) {
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  const int32_t bos = tokenizer.bos_id();
  switch (setting) {
    case EndTokenSetting::kEos:
      if (eos.empty()) throw std::invalid_argument("end_token: eos, but the tokenizer has no EOS");
      return named(tokenizer, eos.front(), "eos");
    case EndTokenSetting::kBos:
      if (bos < 0) throw std::invalid_argument("end_token: bos, but the tokenizer has no BOS");
      return named(tokenizer, bos, "bos");
    case EndTokenSetting::kAuto:
      break;
  }
  std::vector<int32_t> candidates = eos;
  if (bos >= 0 && std::find(eos.begin(), eos.end(), bos) == eos.end()) candidates.push_back(bos);
  if (candidates.empty()) return {};  // nothing to end with: completions just stop
  if (eos.empty()) return named(tokenizer, bos, "auto");
  int64_t texts = 0;
  const std::vector<double> means = mean_logprobs(model, examples, candidates, texts);
  if (texts == 0) return named(tokenizer, eos.front(), "auto");  // nothing ended: keep EOS
  // The likeliest, if clearly likelier than the first EOS.
  size_t best = static_cast<size_t>(std::max_element(means.begin(), means.end()) - means.begin());
  if (means[best] < means[0] + kEndTokenMargin) best = 0;
  prompts::EndToken end = named(tokenizer, candidates[best], "auto");
  end.texts = texts;
  for (size_t i = 0; i < candidates.size(); ++i) {
    end.mean_logprob[tokenizer.id_to_piece(candidates[i])] = means[i];
  }
  return end;
}

std::string describe(const prompts::EndToken& end) {
  if (!end.recorded()) return "nothing (the tokenizer has no EOS or BOS)";
  std::string text = fmt::format("'{}' (id {}; {}", end.piece, end.id, end.chosen_by);
  if (end.texts > 0) {
    text += fmt::format(": mean log-probability at the end of {} completions", end.texts);
    const char* sep = " ";
    for (const auto& [piece, value] : end.mean_logprob) {
      text += fmt::format("{}'{}' {:.2f}", sep, piece, value);
      sep = ", ";
    }
  } else if (end.chosen_by == "auto") {
    text += ": no complete training completion to measure on, so the EOS";
  }
  return text + ")";
}

}  // namespace vitrine::training
