// `vitrine logits`: tools for checking a checkpoint by hand and from scripts.
//
//   vitrine logits --model DIR [--adapter DIR] --ids 1,2,3
//     prints {"ids": [...], "logits": [...]} for the last position.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/runtime.h"

namespace vitrine::cli {
namespace {

struct LogitsArgs {
  std::string model;
  std::string adapter;
  std::string ids;
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
    models::init_runtime(models::RuntimeOptions{.threads = args.threads});
    const std::vector<int64_t> ids = parse_ids(args.ids);
    models::LlamaForCausalLM model = models::load_llama(args.model);
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
        model->forward(at::tensor(ids).unsqueeze(0), nullptr, rows);  // [1, n, vocab]
    const at::Tensor last = logits[0][static_cast<int64_t>(ids.size()) - 1].contiguous();
    const float* p = last.data_ptr<float>();
    nlohmann::ordered_json j = {{"ids", ids}, {"logits", std::vector<float>(p, p + last.numel())}};
    std::puts(j.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine logits: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

Command add_logits_command(CLI::App& app) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Print the last-position logits of a checkpoint (and adapter) as JSON");
  cmd->add_option("--model,-m", args->model,
                  "Hugging Face model directory (config.json, model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter,-a", args->adapter, "PEFT LoRA adapter directory")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids, "comma-separated token ids, e.g. 1,403,407")->required();
  cmd->add_option("--threads", args->threads, "torch threads (0 = cores)");
  return Command{cmd, [args] { return run_logits(*args); }};
}

}  // namespace vitrine::cli
