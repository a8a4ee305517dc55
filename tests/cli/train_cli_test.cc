// `vitrine train` end to end on the real sample: prepare, train both
// adapters for a few steps, and check what a user relies on.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/text_classifier.h"
#include "tests/support/ports.h"
#include "tests/support/run_vitrine.h"
#include "tests/support/temp_dir.h"
#include "training/train_config.h"

namespace vitrine {
namespace {

namespace fs = std::filesystem;
using testing::free_port;
using testing::read_file;
using testing::run_vitrine;
using testing::write_file;

TEST(TrainCli, ShippedConfigHoldsExactlyTheDefaults) {
  const testing::CliRun r = run_vitrine(
      fmt::format("train --config {}/configs/train.yaml --print-config", VITRINE_SOURCE_DIR));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::ordered_json::parse(r.output),
            training::train_config_to_json(training::default_train_config()))
      << "configs/train.yaml and the defaults in the code disagree";
}

// The 1B recipe of docs/fine-tuning.md is a valid config: bf16 base and
// compute, 512-token rows, 16 rows a step.
TEST(TrainCli, TheTinyLlamaRecipeIsAValidConfig) {
  const testing::CliRun r = run_vitrine(fmt::format(
      "train --config {}/configs/train-tinyllama.yaml --print-config", VITRINE_SOURCE_DIR));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto config = nlohmann::json::parse(r.output);
  EXPECT_EQ(config["bf16_compute"], true);
  for (const char* name : {"describe", "qa"}) {
    const auto& a = config["adapters"][name];
    EXPECT_EQ(a["max_seq_len"], 512) << name;
    EXPECT_EQ(a["batch_size"].get<int>() * a["gradient_accumulation"].get<int>(), 16) << name;
    EXPECT_EQ(a["max_steps"], 0) << name;  // one epoch decides
  }
  // A trial run of the recipe: every adapter stops after --max-steps.
  const testing::CliRun trial = run_vitrine(
      fmt::format("train --config {}/configs/train-tinyllama.yaml --max-steps 2 --print-config",
                  VITRINE_SOURCE_DIR));
  ASSERT_EQ(trial.exit_code, 0) << trial.output;
  for (const char* name : {"describe", "qa"}) {
    EXPECT_EQ(nlohmann::json::parse(trial.output)["adapters"][name]["max_steps"], 2) << name;
  }
  EXPECT_EQ(run_vitrine(fmt::format("train --config {}/configs/train-tinyllama.yaml --max-steps 0 "
                                    "--print-config",
                                    VITRINE_SOURCE_DIR))
                .exit_code,
            2);
}

TEST(TrainCli, BadConfigsAreRefusedNamingTheKey) {
  testing::TempDir dir;
  write_file(dir / "typo.yaml", "adapters:\n  describe:\n    learnig_rate: 0.1\n");
  testing::CliRun r = run_vitrine("train --print-config --config " + (dir / "typo.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown config key 'adapters.describe.learnig_rate'"), std::string::npos)
      << r.output;
  write_file(dir / "task.yaml", "adapters:\n  mine:\n    task: summarise\n");
  r = run_vitrine("train --print-config --config " + (dir / "task.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'adapters.mine': task 'summarise'"), std::string::npos) << r.output;
  // int8 is a serving format: LoRA trains on an f32 or bf16 base.
  write_file(dir / "int8.yaml", "base_dtype: int8\n");
  r = run_vitrine("train --print-config --config " + (dir / "int8.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("int8 weights are for serving"), std::string::npos) << r.output;
  r = run_vitrine("train -q --dataset " + dir.path().string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("is not a dataset made by `vitrine prepare`"), std::string::npos)
      << r.output;
}

class TrainRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto inputs = testing::sample_and_model();
    if (!inputs) return;
    model_ = inputs->model;
    dir_ = new testing::TempDir();
    const testing::CliRun r = run_vitrine(fmt::format(
        "prepare -q --input {} --out {}", inputs->sample.string(), (dir_->path() / "ds").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::string adapter;
    for (const char* name : {"describe", "qa"}) {
      adapter += fmt::format(
          "  {}:\n    max_steps: 6\n    warmup_steps: 0\n    learning_rate: 0.01\n"
          "    eval_every: 3\n    checkpoint_every: 3\n    train_examples: 96\n"
          "    validation_examples: 24\n    max_seq_len: 96\n    batch_size: 4\n",
          name);
    }
    write_file(dir_->path() / "tiny.yaml",
               fmt::format("base_model: {}\ndataset: {}\nthreads: 1\nadapters:\n{}"
                           "classifier:\n  epochs: 4\n",
                           model_.string(), (dir_->path() / "ds").string(), adapter));
    // Long enough to be killed part-way: 40 steps, a checkpoint every 4.
    write_file(dir_->path() / "long.yaml",
               fmt::format("base_model: {}\ndataset: {}\nthreads: 1\nclassifier:\n"
                           "  enabled: false\nadapters:\n  describe:\n"
                           "    max_steps: 40\n    checkpoint_every: 4\n    eval_every: 8\n"
                           "    train_examples: 96\n    validation_examples: 8\n"
                           "    max_seq_len: 96\n    batch_size: 4\n    dropout: 0.1\n",
                           model_.string(), (dir_->path() / "ds").string()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "../shared data or models not found";
  }
  static testing::CliRun train(const fs::path& out) {
    return run_vitrine(fmt::format("train -q --no-eval --config {} --output {}",
                                   (dir_->path() / "tiny.yaml").string(), out.string()));
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline fs::path model_;
};

TEST_F(TrainRun, BothAdaptersArePublishedCheckpointedAndLogged) {
  const fs::path out = dir_->path() / "run";
  const testing::CliRun r = train(out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  models::LlamaForCausalLM model = models::load_llama(model_);
  int slot = 0;
  for (const char* name : {"describe", "qa"}) {
    const fs::path adapter = out / "adapters" / name;
    // A PEFT adapter that fits the base, with the record of how it was made.
    EXPECT_NO_THROW(models::attach_adapter(model, models::load_peft_adapter(adapter), slot++));
    const auto record = nlohmann::json::parse(read_file(adapter / "training.json"));
    EXPECT_EQ(record["steps"], 6);
    EXPECT_EQ(record["seed"], 1);
    EXPECT_EQ(record["fingerprints"]["base_model"].get<std::string>().size(), 32u);
    EXPECT_EQ(record["fingerprints"]["dataset"].get<std::string>().size(), 32u);
    EXPECT_EQ(record["config"]["max_steps"], 6);
    // Completions ended with the token this base learnt at a text's end
    // (training/end_token.h): BOS for llama2.c's stories260K, measured.
    const auto format = nlohmann::json::parse(read_file(adapter / "prompt_format.json"));
    EXPECT_EQ(format["end_token"]["id"], 1) << format;
    EXPECT_EQ(format["end_token"]["piece"], "<s>");
    EXPECT_EQ(format["end_token"]["chosen_by"], "auto");
    EXPECT_GT(format["end_token"]["mean_logprob"]["<s>"].get<double>(),
              format["end_token"]["mean_logprob"]["</s>"].get<double>() + 2);
    for (const char* step : {"step-3", "step-6"}) {
      const fs::path ckpt = out / "checkpoints" / name / step;
      EXPECT_TRUE(fs::exists(ckpt / "adapter" / "adapter_model.safetensors")) << ckpt;
      EXPECT_TRUE(fs::exists(ckpt / "optimizer.pt")) << ckpt;
      EXPECT_TRUE(fs::exists(ckpt / "state.json")) << ckpt;
    }
  }
  // The router's classifier, trained on the router task and the texts
  // generated from its titles, with the dataset catalogue's evidence as the
  // daemon routes with it, and measured on its held-out split (hard cases
  // included).
  models::TextClassifier classifier = models::load_text_classifier(out / "classifier");
  const auto info = nlohmann::json::parse(read_file(out / "classifier" / "classifier.json"));
  EXPECT_EQ(info["title_evidence"], true);
  EXPECT_GT(info["training"]["generated_examples"].get<int>(), 0);
  EXPECT_GE(info["training"]["test_accuracy"].get<double>(), 0.9);
  EXPECT_GT(info["training"]["test_hard"].get<int>(), 0);
  EXPECT_EQ(models::classify(*classifier, "What is The Prophet about?").label, "qa");
  EXPECT_EQ(models::classify(*classifier, "Girls Ballet Tutu Neon Pink").label, "describe");
  // Validation at the start (the base), at step 3 and at the end; the
  // tuned adapters beat the base on held-out loss.
  std::map<std::string, std::vector<double>> losses;
  int step_lines = 0;
  std::istringstream lines(read_file(out / "metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "eval") losses[j["adapter"]].push_back(j["validation_loss"]);
    if (j["event"] == "start") {
      EXPECT_EQ(j["end_token"], "<s>");
      EXPECT_GE(j["ended"].get<int64_t>(), 0);  // 96-token rows here: most descriptions are cut
      EXPECT_LE(j["ended"].get<int64_t>(), j["train_examples"].get<int64_t>());
    }
    if (j["event"] == "step") {
      ++step_lines;
      EXPECT_GT(j["real_tokens"].get<int64_t>(), 0);
      EXPECT_LE(j["real_tokens"].get<int64_t>(), j["tokens"].get<int64_t>());
    }
  }
  EXPECT_EQ(step_lines, 12);
  // The same scalars for TensorBoard (the format is checked in TensorBoard.*).
  ASSERT_TRUE(fs::exists(out / "tensorboard"));
  size_t event_bytes = 0;
  for (const auto& e : fs::directory_iterator(out / "tensorboard")) {
    EXPECT_EQ(e.path().filename().string().rfind("events.out.tfevents.", 0), 0u);
    event_bytes += fs::file_size(e.path());
  }
  EXPECT_GT(event_bytes, 12u * 4 * 40);  // 4 scalars a step, 12 steps
  for (const char* name : {"describe", "qa"}) {
    ASSERT_EQ(losses[name].size(), 3u) << name;
    EXPECT_LT(losses[name].back(), losses[name].front()) << name;
  }
}

TEST_F(TrainRun, TheSameSeedGivesTheSameAdapters) {
  ASSERT_EQ(train(dir_->path() / "a").exit_code, 0);
  ASSERT_EQ(train(dir_->path() / "b").exit_code, 0);
  for (const char* name : {"describe", "qa"}) {
    EXPECT_EQ(read_file(dir_->path() / "a" / "adapters" / name / "adapter_model.safetensors"),
              read_file(dir_->path() / "b" / "adapters" / name / "adapter_model.safetensors"))
        << name;
  }
}

TEST_F(TrainRun, AKilledRunResumesToTheSameAdapter) {
  const fs::path config = dir_->path() / "long.yaml";
  const fs::path whole = dir_->path() / "whole", killed = dir_->path() / "killed";
  ASSERT_EQ(run_vitrine(fmt::format("train -q --no-eval --config {} --output {}", config.string(),
                                    whole.string()))
                .exit_code,
            0);
  // Start the same run, SIGKILL it once a checkpoint is on disk, resume it.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string binary = std::string(VITRINE_BINARY_DIR) + "/cli/vitrine";
    const std::string config_arg = config.string(), out_arg = killed.string();
    execl(binary.c_str(), binary.c_str(), "train", "-q", "--no-eval", "--config",
          config_arg.c_str(), "--output", out_arg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const fs::path first = killed / "checkpoints" / "describe" / "step-4" / "state.json";
  for (int i = 0; i < 6000 && !fs::exists(first); ++i) usleep(5000);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(killed / "adapters" / "describe"));
  const testing::CliRun resumed = run_vitrine(fmt::format(
      "train -q --no-eval --resume --config {} --output {}", config.string(), killed.string()));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_file(killed / "adapters" / "describe" / "adapter_model.safetensors"),
            read_file(whole / "adapters" / "describe" / "adapter_model.safetensors"));
  const auto a = nlohmann::json::parse(read_file(whole / "adapters/describe/training.json"));
  const auto b = nlohmann::json::parse(read_file(killed / "adapters/describe/training.json"));
  EXPECT_EQ(a["best_validation_loss"], b["best_validation_loss"]);
  EXPECT_EQ(a["last_train_loss"], b["last_train_loss"]);
  // Resuming a finished run changes nothing; a changed config is refused.
  const std::string before = read_file(killed / "adapters/describe/adapter_model.safetensors");
  ASSERT_EQ(run_vitrine(fmt::format("train -q --no-eval --resume --config {} --output {}",
                                    config.string(), killed.string()))
                .exit_code,
            0);
  EXPECT_EQ(read_file(killed / "adapters/describe/adapter_model.safetensors"), before);
  const testing::CliRun changed =
      run_vitrine(fmt::format("train -q --no-eval --resume --config {} --output {}",
                              (dir_->path() / "tiny.yaml").string(), killed.string()));
  EXPECT_EQ(changed.exit_code, 1);
  EXPECT_NE(changed.output.find("the configuration differs"), std::string::npos) << changed.output;
}

// The validation losses of a run's metrics.jsonl, per adapter, in order.
std::map<std::string, std::vector<double>> validation_losses(const fs::path& run) {
  std::map<std::string, std::vector<double>> losses;
  std::istringstream lines(read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "eval") losses[j["adapter"]].push_back(j["validation_loss"]);
  }
  return losses;
}

// The same run with the base held in bf16 and in float32, from the same
// float32 checkpoint: the bf16 base rounds every projection and the
// embeddings, and the losses stay within 1 % at every validation.
TEST_F(TrainRun, ABf16BaseTrainsWithinOnePercentOfFloat32) {
  const fs::path tiny = dir_->path() / "tiny.yaml";
  std::map<std::string, std::map<std::string, std::vector<double>>> by_dtype;
  for (const char* dtype : {"f32", "bf16"}) {
    const fs::path out = dir_->path() / fmt::format("dtype-{}", dtype);
    const testing::CliRun r =
        run_vitrine(fmt::format("train --no-eval --config {} --output {} --base-dtype {}",
                                tiny.string(), out.string(), dtype));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(fmt::format("base {}, memory estimate", dtype)), std::string::npos)
        << r.output;
    by_dtype[dtype] = validation_losses(out);
  }
  for (const char* name : {"describe", "qa"}) {
    const auto& f32 = by_dtype["f32"][name];
    const auto& bf16 = by_dtype["bf16"][name];
    ASSERT_EQ(f32.size(), 3u) << name;
    ASSERT_EQ(bf16.size(), f32.size()) << name;
    for (size_t i = 0; i < f32.size(); ++i) {
      std::printf("[ bf16 vs f32 ] %s validation %zu: %.5f vs %.5f (%+.3f %%)\n", name, i, bf16[i],
                  f32[i], 100 * (bf16[i] - f32[i]) / f32[i]);
      EXPECT_LT(std::abs(bf16[i] - f32[i]) / f32[i], 0.01)
          << name << " validation " << i << ": bf16 " << bf16[i] << ", f32 " << f32[i];
    }
  }
}

// A run whose estimate exceeds the memory is refused before it starts
// (no run directory), and the message says what to change.
TEST_F(TrainRun, ARunThatWillNotFitIsRefusedNamingWhatToChange) {
  const fs::path out = dir_->path() / "too-big";
  const fs::path config = dir_->path() / "small-machine.yaml";
  write_file(config, read_file(dir_->path() / "tiny.yaml") + "memory_limit_gb: 0.05\n");
  const testing::CliRun r = run_vitrine(
      fmt::format("train -q --no-eval --config {} --output {}", config.string(), out.string()));
  EXPECT_EQ(r.exit_code, 1);
  for (const char* part : {"training adapter 'describe' would need about",
                           "more than the 51 MiB this machine has free", "lower batch_size (4)",
                           "lower max_seq_len (96)", "base_dtype: bf16"}) {
    EXPECT_NE(r.output.find(part), std::string::npos) << "missing: " << part << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out)) << "refused before anything was written";
}

TEST_F(TrainRun, EvalComparesBaseAndTunedOnTheSameProducts) {
  const fs::path out = dir_->path() / "evaluated";
  ASSERT_EQ(train(out).exit_code, 0);
  const testing::CliRun r = run_vitrine(fmt::format(
      "eval -q --run {} --test 6 --train 3 --max-new-tokens 12 --batch-size 4", out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("describe test (6 products): ROUGE-L"), std::string::npos) << r.output;
  const auto report = nlohmann::json::parse(read_file(out / "eval" / "report.json"));
  ASSERT_EQ(report["results"].size(), 4u);  // two adapters x test, train
  for (const auto& result : report["results"]) {
    for (const char* side : {"base", "tuned"}) {
      const auto& s = result[side];
      EXPECT_GE(s["rougeL"].get<double>(), 0.0);
      EXPECT_LE(s["rougeL"].get<double>(), 1.0);
      EXPECT_GT(s["perplexity"].get<double>(), 1.0);
      EXPECT_GT(s["mean_words"].get<double>(), 0.0) << "an empty answer";
      // A share of the answers, each ended by EOS or cut at 12 tokens.
      EXPECT_GE(s["stopped_share"].get<double>(), 0.0);
      EXPECT_LE(s["stopped_share"].get<double>(), 1.0);
      const double answers = s["stopped_share"].get<double>() * result["examples"].get<double>();
      EXPECT_NEAR(answers, std::round(answers), 1e-9);
    }
    // (Whether tuning helps is measured by full runs, docs/training.md; six
    // steps on 96-token rows are too few to say.)
    ASSERT_FALSE(result["samples"].empty());
    EXPECT_NE(result["samples"][0]["base"], result["samples"][0]["tuned"]);
  }
  const std::string md = read_file(out / "eval" / "report.md");
  EXPECT_NE(md.find("| ROUGE-L F1 |"), std::string::npos);
  EXPECT_NE(md.find("| answers that ended by themselves |"), std::string::npos);
  EXPECT_NE(md.find("| asked | reference | base | tuned |"), std::string::npos);
  EXPECT_NE(md.find("![training and validation loss](loss_curves.svg)"), std::string::npos);
  const std::string svg = read_file(out / "eval" / "loss_curves.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("describe: training (line)"), std::string::npos);
}

// grounding: description end to end: the adapter records the format it
// was trained with (prompt_format.json, training.json), and eval asks each
// qa adapter in its own format, on the same questions, with the stop share
// and faithfulness beside ROUGE-L and BLEU, closed-book and grounded side
// by side.
TEST_F(TrainRun, AGroundedQaAdapterRecordsItsFormatAndEvalSetsItBesideClosedBook) {
  const fs::path out = dir_->path() / "grounded";
  std::string adapters;
  for (const char* grounding : {"none", "description"}) {
    adapters += fmt::format(
        "  qa_{}:\n    task: qa\n    grounding: {}\n    max_description_chars: 80\n"
        "    max_steps: 3\n    warmup_steps: 0\n    learning_rate: 0.01\n    eval_every: 0\n"
        "    checkpoint_every: 0\n    train_examples: 32\n    validation_examples: 8\n"
        "    max_seq_len: 256\n    batch_size: 4\n",
        grounding, grounding);
  }
  write_file(dir_->path() / "grounded.yaml",
             fmt::format("base_model: {}\ndataset: {}\nthreads: 1\nadapters:\n{}"
                         "classifier:\n  enabled: false\n",
                         model_.string(), (dir_->path() / "ds").string(), adapters));
  testing::CliRun r =
      run_vitrine(fmt::format("train -q --no-eval --config {} --output {}",
                              (dir_->path() / "grounded.yaml").string(), out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto format =
      nlohmann::json::parse(read_file(out / "adapters" / "qa_description" / "prompt_format.json"));
  EXPECT_EQ(format["task"], "qa");
  EXPECT_EQ(format["grounding"], "description");
  EXPECT_EQ(format["max_description_chars"], 80);
  EXPECT_EQ(nlohmann::json::parse(
                read_file(out / "adapters" / "qa_none" / "prompt_format.json"))["grounding"],
            "none");
  const auto record =
      nlohmann::json::parse(read_file(out / "adapters" / "qa_description" / "training.json"));
  EXPECT_EQ(record["config"]["grounding"], "description");

  r = run_vitrine(fmt::format(
      "eval -q --run {} --test 5 --train 0 --max-new-tokens 8 --batch-size 4", out.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("qa_description test (5 products): ROUGE-L"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("grounding description, faithfulness"), std::string::npos) << r.output;
  const auto report = nlohmann::json::parse(read_file(out / "eval" / "report.json"));
  ASSERT_EQ(report["qa_comparison"].size(), 1u);  // the test split; --train 0
  const auto& comparison = report["qa_comparison"][0];
  EXPECT_EQ(comparison["split"], "test");
  EXPECT_EQ(comparison["examples"], 5);
  // The references are drawn from the descriptions: nearly all their words are there.
  EXPECT_GT(comparison["reference_faithfulness"].get<double>(), 0.9);
  ASSERT_EQ(comparison["adapters"].size(), 2u);
  std::set<std::string> groundings;
  for (const auto& a : comparison["adapters"]) {
    groundings.insert(a["grounding"].get<std::string>());
    for (const char* side : {"tuned", "base"}) {
      for (const char* key : {"rougeL", "faithfulness", "stopped_share"}) {
        EXPECT_GE(a[side][key].get<double>(), 0.0) << key;
        EXPECT_LE(a[side][key].get<double>(), 1.0) << key;
      }
      EXPECT_GE(a[side]["bleu"].get<double>(), 0.0);
    }
  }
  EXPECT_EQ(groundings, (std::set<std::string>{"none", "description"}));
  const std::string md = read_file(out / "eval" / "report.md");
  EXPECT_NE(md.find("## qa: closed-book vs grounded, test split (5 questions"), std::string::npos)
      << md;
  EXPECT_NE(
      md.find("| model | grounding | ROUGE-L F1 | BLEU-4 | faithfulness | ended by themselves"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("| qa_description | description |"), std::string::npos) << md;
  EXPECT_NE(md.find("| faithfulness to the description (reference"), std::string::npos) << md;
}

TEST(TrainCli, GroundingIsCheckedNamingTheAdapter) {
  testing::TempDir dir;
  write_file(dir / "old.yaml", "adapters:\n  qa:\n    grounding: title_and_description\n");
  testing::CliRun r = run_vitrine("train --print-config --config " + (dir / "old.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'adapters.qa': grounding 'title_and_description' is now called "
                          "'description'"),
            std::string::npos)
      << r.output;
  write_file(dir / "describe.yaml", "adapters:\n  describe:\n    grounding: title\n");
  r = run_vitrine("train --print-config --config " + (dir / "describe.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("grounding 'title' is for qa adapters"), std::string::npos) << r.output;
}

std::vector<double> step_losses(const fs::path& metrics) {
  std::vector<double> losses;
  std::istringstream lines(read_file(metrics));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["event"] == "step") losses.push_back(j["loss"]);
  }
  return losses;
}

TEST_F(TrainRun, TwoDataParallelRanksTakeTheSingleProcessSteps) {
  // Two ranks on loopback with micro-batches of 2, against one process
  // accumulating two micro-batches of 2: the same 4 rows a step.
  const std::string adapter = fmt::format(
      "base_model: {}\ndataset: {}\nthreads: 1\nclassifier:\n  enabled: false\nadapters:\n"
      "  describe:\n    max_steps: 6\n    warmup_steps: 0\n    learning_rate: 0.01\n"
      "    dropout: 0\n    eval_every: 3\n    checkpoint_every: 3\n    train_examples: 48\n"
      "    validation_examples: 16\n    max_seq_len: 96\n    batch_size: 2\n",
      model_.string(), (dir_->path() / "ds").string());
  write_file(dir_->path() / "ranks.yaml", adapter + "    gradient_accumulation: 1\n");
  write_file(dir_->path() / "one.yaml", adapter + "    gradient_accumulation: 2\n");
  const fs::path one = dir_->path() / "dp-one", ranks = dir_->path() / "dp-ranks";
  const testing::CliRun single =
      run_vitrine(fmt::format("train -q --no-eval --config {} --output {}",
                              (dir_->path() / "one.yaml").string(), one.string()));
  ASSERT_EQ(single.exit_code, 0) << single.output;

  const uint16_t port = free_port();
  auto rank = [&](int r) {
    return std::async(std::launch::async, [&, r] {
      return run_vitrine(
          fmt::format("train -q --no-eval --config {} --output {}",
                      (dir_->path() / "ranks.yaml").string(), ranks.string()),
          fmt::format("env RANK={} WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={} "
                      "VITRINE_DIST_TIMEOUT=120",
                      r, port));
    });
  };
  auto rank0 = rank(0), rank1 = rank(1);
  const testing::CliRun r0 = rank0.get(), r1 = rank1.get();
  ASSERT_EQ(r0.exit_code, 0) << r0.output;
  ASSERT_EQ(r1.exit_code, 0) << r1.output;

  // Both ranks ended with the same adapter: each compared its tensors with
  // rank 0's before rank 0 published.
  EXPECT_NE(r1.output.find("describe: 6 steps as a replica, adapter equal to rank 0's within 0"),
            std::string::npos)
      << r1.output;
  const auto record =
      nlohmann::json::parse(read_file(ranks / "adapters" / "describe" / "training.json"));
  EXPECT_EQ(record["data_parallel"]["world_size"], 2);
  EXPECT_EQ(record["data_parallel"]["rows_per_step"], 4);
  EXPECT_EQ(record["data_parallel"]["replicas_max_difference"], 0.0);

  // And that adapter is the single process's, up to the order of sums.
  const models::PeftAdapter a = models::load_peft_adapter(ranks / "adapters" / "describe");
  const models::PeftAdapter b = models::load_peft_adapter(one / "adapters" / "describe");
  ASSERT_EQ(a.modules.size(), b.modules.size());
  for (const auto& [path, m] : a.modules) {
    const auto& other = b.modules.at(path);
    EXPECT_TRUE(at::allclose(m.a, other.a, 1e-5, 1e-6)) << path;
    EXPECT_TRUE(at::allclose(m.b, other.b, 1e-5, 1e-6)) << path;
    EXPECT_GT(m.b.abs().max().item<float>(), 0.0f) << path << " never trained";
  }
  const std::vector<double> la = step_losses(ranks / "metrics.jsonl"),
                            lb = step_losses(one / "metrics.jsonl");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), 6u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(la[i], lb[i], 1e-5 * lb[i]) << "step " << i;
  // Rank 1 wrote nothing of its own: one metrics log, one TensorBoard file.
  EXPECT_EQ(std::distance(fs::directory_iterator(ranks / "tensorboard"), fs::directory_iterator()),
            1);
}

TEST(TrainCli, DataParallelSettingsAreCheckedAndARankAloneGivesUp) {
  testing::CliRun r =
      run_vitrine("train -q --no-eval --output /nonexistent", "env -u RANK WORLD_SIZE=2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("WORLD_SIZE=2 but RANK is unset"), std::string::npos) << r.output;
  r = run_vitrine("train -q --no-eval --output /nonexistent", "env WORLD_SIZE=2 RANK=2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("RANK='2': expected an integer from 0 to 1"), std::string::npos)
      << r.output;
  // Rank 1 waiting for a rank 0 that never comes stops at the timeout.
  testing::TempDir dir;
  write_file(dir / "stats.json", "{}");
  r = run_vitrine(fmt::format("train -q --no-eval --dataset {} --output {}", dir.path().string(),
                              (dir / "run").string()),
                  fmt::format("env RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={} "
                              "VITRINE_DIST_TIMEOUT=2",
                              free_port()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("rank 1 of 2: cannot join the process group at 127.0.0.1:"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace vitrine
