// `vitrine logits` and `vitrine generate`: tools for checking a checkpoint by
// hand and from scripts.
//
//   vitrine logits --model DIR [--adapter DIR] --ids 1,2,3 [--weights f32|bf16|int8]
//     prints {"ids": [...], "logits": [...]} for the last position.
//   vitrine generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--weights ...]
//                    [sampling options]
//     prints the prompt and streams the continuation.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "models/generation.h"
#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/runtime.h"
#include "models/tokenizer/chat_format.h"
#include "prompts/prompt_format.h"

namespace vitrine::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string adapter;
  std::string ids;
  std::string weights = "auto";
  std::string bf16_path = "fast";
  std::string device = "cpu";
  int threads = 0;
};

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    try {
      ids.push_back(std::stoll(item, &used));
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      throw std::invalid_argument(fmt::format("--ids: '{}' is not an integer", item));
  }
  if (ids.empty()) throw std::invalid_argument("--ids: no ids given");
  return ids;
}

int run_logits(const LogitsArgs& args) {
  try {
    models::init_runtime(models::RuntimeOptions{.threads = args.threads, .device = args.device});
    const std::vector<int64_t> ids = parse_ids(args.ids);
    models::LlamaForCausalLM model = models::load_llama(
        args.model, args.device, models::WeightLayout::kPacked,
        models::parse_base_dtype(args.weights), models::loading_bar("loading " + args.model));
    if (args.bf16_path == "exact") model->set_bf16_path(models::Bf16Path::kExact);
    for (const int64_t id : ids) {
      if (id < 0 || id >= model->config().vocab_size) {
        throw std::invalid_argument(fmt::format("--ids: {} is outside the vocabulary [0, {})", id,
                                                model->config().vocab_size));
      }
    }
    models::RowAdapters rows;
    if (!args.adapter.empty()) {
      models::attach_adapter(model, models::load_peft_adapter(args.adapter), 0);
      rows = {0};
    }
    at::NoGradGuard no_grad;
    const at::Tensor logits =
        model->forward(at::tensor(ids).unsqueeze(0).to(models::resolve_device(args.device)),
                       nullptr, rows);  // [1, n, vocab]
    const at::Tensor last =
        logits[0][static_cast<int64_t>(ids.size()) - 1].to(at::kCPU).contiguous();
    const float* p = last.data_ptr<float>();
    nlohmann::ordered_json j = {{"ids", ids}, {"logits", std::vector<float>(p, p + last.numel())}};
    std::puts(j.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine logits: error: %s\n", e.what());
    return 1;
  }
}

struct GenerateArgs {
  std::string model;
  std::string adapter;
  std::string prompt;
  bool chat = false;
  std::string weights = "auto";
  std::string device = "cpu";
  int threads = 0;
  models::GenerationOptions options;
};

int run_generate(GenerateArgs args) {
  try {
    models::init_runtime(models::RuntimeOptions{.threads = args.threads, .device = args.device});
    models::LlamaForCausalLM model = models::load_llama(
        args.model, args.device, models::WeightLayout::kPacked,
        models::parse_base_dtype(args.weights), models::loading_bar("loading " + args.model));
    const auto tokenizer = models::load_tokenizer(args.model);
    int slot = -1;
    if (!args.adapter.empty()) {
      models::attach_adapter(model, models::load_peft_adapter(args.adapter), 0);
      slot = 0;
    }
    std::string text = args.prompt;
    if (args.chat) {
      const auto family = models::detect_chat_family(args.model);
      text = models::render_chat_prompt(family, {.system = "", .user = args.prompt});
      for (const auto& stop : models::chat_stop_strings(family))
        args.options.stop_strings.push_back(stop);
    }
    const auto ids32 = tokenizer->encode(text, /*add_bos=*/true);
    const std::vector<int64_t> prompt(ids32.begin(), ids32.end());
    // With an adapter, also its end token (prompt_format.json).
    args.options.eos_ids = prompts::stop_ids(
        args.adapter.empty() ? prompts::PromptFormat{} : prompts::read_prompt_format(args.adapter),
        *tokenizer);
    if (!args.chat) std::fputs(tokenizer->decode(ids32).c_str(), stdout);
    models::generate(model, *tokenizer, prompt, args.options, slot,
                     [](int64_t, std::string_view piece) {
                       std::fwrite(piece.data(), 1, piece.size(), stdout);
                       std::fflush(stdout);
                       return true;
                     });
    std::fputc('\n', stdout);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine generate: error: %s\n", e.what());
    return 1;
  }
}

// --weights (also spelled --base-dtype, as train's): the base's format.
void add_weights_option(CLI::App* cmd, std::string& weights) {
  cmd->add_option("--weights,--base-dtype", weights,
                  "the base's weights: f32 (exact), bf16, int8 (a scale per output row, made at "
                  "load) or auto (bf16 for a bf16/f16 checkpoint, else f32)")
      ->check(CLI::IsMember({"auto", "f32", "bf16", "int8"}))
      ->capture_default_str();
}

}  // namespace

Command add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Generate text from a checkpoint (and adapter), streaming to stdout");
  cmd->add_option(
         "--model,-m", args->model,
         "Hugging Face model directory (config.json, model.safetensors or shards, tokenizer)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter,-a", args->adapter, "PEFT LoRA adapter directory")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt,-p", args->prompt, "the text to continue")->required();
  cmd->add_flag("--chat", args->chat,
                "wrap the prompt in the model's chat format (from tokenizer_config.json)");
  cmd->add_option("--max-new-tokens,-n", args->options.max_new_tokens, "tokens to generate at most")
      ->capture_default_str();
  cmd->add_option("--temperature", args->options.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", args->options.top_k, "0 = all tokens")->capture_default_str();
  cmd->add_option("--top-p", args->options.top_p, "1 = all tokens")->capture_default_str();
  cmd->add_option("--repetition-penalty", args->options.repetition_penalty, "1 = none")
      ->capture_default_str();
  cmd->add_option("--seed", args->options.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", args->options.stop_strings,
                  "stop when the text ends with this (repeatable)");
  add_weights_option(cmd, args->weights);
  cmd->add_option("--threads", args->threads, "torch threads (0 = cores)");
  cmd->add_option("--device", args->device, "where the model runs: cpu, cuda or cuda:N")
      ->capture_default_str();
  return Command{cmd, [args] { return run_generate(*args); }};
}

Command add_logits_command(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Print the last-position logits of a checkpoint (and adapter) as JSON");
  cmd->add_option("--model,-m", args->model,
                  "Hugging Face model directory (config.json, model.safetensors or shards)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter,-a", args->adapter, "PEFT LoRA adapter directory")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids, "comma-separated token ids, e.g. 1,403,407")->required();
  add_weights_option(cmd, args->weights);
  cmd->add_option("--bf16-path", args->bf16_path,
                  "a bf16 base's products: fast (activations rounded to bf16, as served) or exact")
      ->check(CLI::IsMember({"fast", "exact"}))
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "torch threads (0 = cores)");
  cmd->add_option("--device", args->device, "where the model runs: cpu, cuda or cuda:N")
      ->capture_default_str();
  return Command{cmd, [args] { return run_logits(*args); }};
}

}  // namespace vitrine::cli
