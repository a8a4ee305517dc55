// `vitrine export`: a base model and a LoRA adapter as a Hugging Face
// model directory for other runtimes (transformers, vLLM, llama.cpp's
// converter); the work is models::export_model.
//
//   vitrine export --model BASE --adapter DIR --out OUT [--merge]
//                  [--dtype auto|f32|bf16|f16] [--max-shard-size 5GB]
//     prints what it wrote; exit 0 done, 1 refused or failed, 2 usage.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "common/byte_size.h"
#include "models/export.h"
#include "models/runtime.h"

namespace vitrine::cli {
namespace {

struct ExportArgs {
  models::ExportOptions options;
  std::string dtype = "auto";
  std::string max_shard_size = "5GB";  // models::kDefaultMaxShardBytes, as transformers spells it
  int threads = 0;
  bool quiet = false;
};

// A CLI11 check from a parser that throws std::invalid_argument with the message to show.
template <typename Parse>
CLI::Validator check_by(Parse parse, std::string description) {
  return CLI::Validator(
      [parse](std::string& text) {
        try {
          parse(text);
          return std::string();
        } catch (const std::invalid_argument& e) {
          return std::string(e.what());
        }
      },
      std::move(description));
}

int run_export(ExportArgs args) {
  try {
    models::init_runtime(models::RuntimeOptions{.threads = args.threads, .device = "cpu"});
    args.options.dtype = models::parse_export_dtype(args.dtype);
    args.options.max_shard_bytes = parse_byte_size(args.max_shard_size);
    args.options.progress = !args.quiet;
    const models::ExportResult r = models::export_model(args.options);
    const std::string what =
        args.options.merge
            ? fmt::format("{} adapter modules merged", r.adapter_modules)
            : fmt::format("the base, with the adapter ({} modules) in adapter/", r.adapter_modules);
    fmt::print("wrote {}: {}; {}, {} bytes of weights in {}\n", r.out.string(), what,
               models::export_dtype_name(r.dtype), r.weight_bytes, fmt::join(r.weight_files, ", "));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitrine export: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

Command add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a base model and a LoRA adapter as a Hugging Face model directory");
  cmd->add_option("--model,-m", args->options.model,
                  "the base: Hugging Face model directory (config.json, model.safetensors or "
                  "shards)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter,-a", args->options.adapter, "PEFT LoRA adapter directory for the base")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out,-o", args->options.out,
                  "directory to write: new, empty, or an earlier export (replaced whole)")
      ->required();
  cmd->add_flag("--merge", args->options.merge,
                "fold the adapter into the weights (default: the base, with the adapter in "
                "OUT/adapter)");
  cmd->add_option("--dtype", args->dtype,
                  "weights written as auto (the base's projections' dtype), f32, bf16 or f16")
      ->capture_default_str()
      ->check(check_by(models::parse_export_dtype, "DTYPE"));
  cmd->add_option("--max-shard-size", args->max_shard_size,
                  "largest weights file; more goes into shards with model.safetensors.index.json "
                  "(e.g. 500MB, 2GB, 1GiB)")
      ->capture_default_str()
      ->check(check_by(parse_byte_size, "SIZE"));
  cmd->add_option("--threads", args->threads, "torch threads (0 = cores)");
  cmd->add_flag("--quiet,-q", args->quiet, "no progress line");
  return Command{cmd, [args] { return run_export(*args); }};
}

}  // namespace vitrine::cli
