#include "training/evaluation.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/atomic_output.h"
#include "common/progress.h"
#include "common/strings.h"
#include "models/generation.h"
#include "models/llama.h"
#include "models/peft_adapter.h"
#include "models/runtime.h"
#include "models/tokenizer/chat_format.h"
#include "prompts/prompts.h"
#include "training/examples.h"
#include "training/lm_loss.h"
#include "training/text_metrics.h"

namespace vitrine::training {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

struct Item {
  std::string uid, input, reference;
};

std::vector<Item> read_items(const fs::path& file, prompts::Task task, int64_t limit) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(fmt::format("cannot read '{}'", file.string()));
  const auto [input_key, output_key] = prompts::task_fields(task);
  std::vector<Item> items;
  std::string line;
  for (int64_t n = 1; static_cast<int64_t>(items.size()) < limit && std::getline(in, line); ++n) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains(input_key) || !j.contains(output_key)) {
      throw std::runtime_error(fmt::format("'{}' line {}: not a {} task line", file.string(), n,
                                           prompts::task_name(task)));
    }
    items.push_back(
        {j.value("uid", ""), j[input_key].get<std::string>(), j[output_key].get<std::string>()});
  }
  return items;
}

double words(const std::string& text) {
  return static_cast<double>(rouge_tokens(text).size());
}

// exp(mean loss) of the examples' completions with adapter `slot` (-1 = base).
double perplexity(models::LlamaForCausalLM& model, const std::vector<Example>& examples, int slot,
                  int64_t max_seq_len, int64_t batch_size) {
  at::NoGradGuard no_grad;
  const auto rows = pack_examples(examples, max_seq_len, /*packing=*/false);
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch_size)) {
    const Batch b = make_batch(rows, i, std::min(rows.size(), i + static_cast<size_t>(batch_size)));
    const models::RowAdapters adapters(static_cast<size_t>(b.ids.size(0)), slot);
    const LossSum part =
        causal_lm_loss_sum(model->forward_packed(b.ids, b.segments, adapters), b.labels);
    sum += part.sum.item<double>();
    count += part.count;
  }
  return count > 0 ? std::exp(sum / static_cast<double>(count)) : NAN;  // NaN: no reference fits
}

Json scores_json(const ModelScores& s) {
  return {{"rouge1", s.rouge1},
          {"rouge2", s.rouge2},
          {"rougeL", s.rougeL},
          {"bleu", s.bleu},
          {"perplexity", std::isfinite(s.perplexity) ? Json(s.perplexity) : Json(nullptr)},
          {"mean_words", s.mean_words},
          {"stopped_share", s.stopped_share},
          {"faithfulness", s.faithfulness}};
}

std::string cell(const std::string& text) {
  std::string out = text.size() > 280 ? text.substr(0, 277) + "..." : text;
  for (char& c : out) {
    if (c == '\n' || c == '|') c = ' ';
  }
  return out;
}

// The qa adapters' results on `split` (closed-book and grounded ones, on the
// same questions), when the run has more than one qa adapter.
std::vector<const SplitResult*> qa_results(const std::vector<SplitResult>& results,
                                           const std::string& split) {
  std::vector<const SplitResult*> out;
  for (const SplitResult& r : results) {
    if (r.task == "qa" && r.split == split) out.push_back(&r);
  }
  if (out.size() < 2) out.clear();
  return out;
}

// The closed-book vs grounded table: each qa adapter and the base model
// asked in that adapter's format, on the same questions.
std::string render_qa_comparison(const std::vector<SplitResult>& results) {
  std::string md;
  for (const char* split : {"test", "train"}) {
    const std::vector<const SplitResult*> qa = qa_results(results, split);
    if (qa.empty()) continue;
    md += fmt::format(
        "## qa: closed-book vs grounded, {} split ({} questions, the same for every row)\n\n"
        "Faithfulness: the share of an answer's content words (lowercase words less English and "
        "Portuguese stopwords) found in the product's description; the references score {:.2f}."
        "\n\n",
        split, qa.front()->examples, qa.front()->reference_faithfulness);
    md +=
        "| model | grounding | ROUGE-L F1 | BLEU-4 | faithfulness | ended by themselves | mean "
        "words |\n| --- | --- | --- | --- | --- | --- | --- |\n";
    for (const SplitResult* r : qa) {
      for (const auto& [who, s] :
           {std::pair<std::string, const ModelScores*>{r->adapter, &r->tuned},
            {"base, same prompt", &r->base}}) {
        md += fmt::format("| {} | {} | {:.4f} | {:.2f} | {:.2f} | {:.0f} % | {:.1f} |\n", who,
                          r->grounding, s->rougeL, s->bleu, s->faithfulness, 100 * s->stopped_share,
                          s->mean_words);
      }
    }
    md += "\n";
  }
  return md;
}

Json qa_comparison_json(const std::vector<SplitResult>& results) {
  Json out = Json::array();
  for (const char* split : {"test", "train"}) {
    const std::vector<const SplitResult*> qa = qa_results(results, split);
    if (qa.empty()) continue;
    Json rows = Json::array();
    for (const SplitResult* r : qa) {
      rows.push_back({{"adapter", r->adapter},
                      {"grounding", r->grounding},
                      {"tuned", scores_json(r->tuned)},
                      {"base", scores_json(r->base)}});
    }
    out.push_back({{"split", split},
                   {"examples", qa.front()->examples},
                   {"reference_faithfulness", qa.front()->reference_faithfulness},
                   {"adapters", rows}});
  }
  return out;
}

std::string render_markdown(const std::vector<SplitResult>& results, const TrainConfig& config,
                            const EvalOptions& options) {
  std::string md = "# Evaluation: base model vs tuned adapters\n\n";
  md += fmt::format(
      "Base model `{}`, dataset `{}`. Greedy decoding, at most {} new tokens, repetition "
      "penalty {}, the same prompts and settings for both. ROUGE F1 as rouge_score computes it "
      "(mean over examples), BLEU-4 as "
      "sacreBLEU's corpus_bleu (13a), perplexity of the dataset's reference answers.\n\n",
      config.base_model, config.dataset, options.max_new_tokens, options.repetition_penalty);
  md += render_qa_comparison(results);
  for (const auto& r : results) {
    md += fmt::format("## {} adapter, {} split ({} products)\n\n", r.adapter, r.split, r.examples);
    if (r.task == "qa") md += fmt::format("qa prompts with grounding `{}`.\n\n", r.grounding);
    md += "| measure | base | tuned |\n| --- | --- | --- |\n";
    md += fmt::format("| ROUGE-1 F1 | {:.4f} | {:.4f} |\n", r.base.rouge1, r.tuned.rouge1);
    md += fmt::format("| ROUGE-2 F1 | {:.4f} | {:.4f} |\n", r.base.rouge2, r.tuned.rouge2);
    md += fmt::format("| ROUGE-L F1 | {:.4f} | {:.4f} |\n", r.base.rougeL, r.tuned.rougeL);
    md += fmt::format("| BLEU-4 | {:.2f} | {:.2f} |\n", r.base.bleu, r.tuned.bleu);
    md += fmt::format("| reference perplexity | {:.2f} | {:.2f} |\n", r.base.perplexity,
                      r.tuned.perplexity);
    md += fmt::format("| mean answer words (reference {:.1f}) | {:.1f} | {:.1f} |\n",
                      r.reference_mean_words, r.base.mean_words, r.tuned.mean_words);
    md += fmt::format("| answers that ended by themselves | {:.0f} % | {:.0f} % |\n",
                      100 * r.base.stopped_share, 100 * r.tuned.stopped_share);
    if (r.task == "qa") {
      md +=
          fmt::format("| faithfulness to the description (reference {:.2f}) | {:.2f} | {:.2f} |\n",
                      r.reference_faithfulness, r.base.faithfulness, r.tuned.faithfulness);
    }
    md += "\n";
    if (!r.samples.empty()) {
      md += "| asked | reference | base | tuned |\n| --- | --- | --- | --- |\n";
      for (const auto& s : r.samples) {
        md += fmt::format("| {} | {} | {} | {} |\n", cell(s.input), cell(s.reference), cell(s.base),
                          cell(s.tuned));
      }
      md += "\n";
    }
  }
  return md;
}

// An SVG chart of each adapter's training loss (lines) and validation loss
// (dots) against steps, from the run's metrics.jsonl; empty when there is none.
std::string loss_curves_svg(const fs::path& metrics_file) {
  std::ifstream in(metrics_file);
  if (!in) return "";
  struct Series {
    std::vector<std::pair<double, double>> train, validation;
  };
  std::map<std::string, Series> series;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("event") || !j.contains("adapter")) continue;
    if (j["event"] == "step") {
      series[j["adapter"]].train.emplace_back(j["step"].get<double>(), j["loss"].get<double>());
    } else if (j["event"] == "eval") {
      series[j["adapter"]].validation.emplace_back(j["step"].get<double>(),
                                                   j["validation_loss"].get<double>());
    }
  }
  if (series.empty()) return "";
  double max_step = 1, low = 1e30, high = -1e30;
  for (const auto& [name, s] : series) {
    for (const auto* points : {&s.train, &s.validation}) {
      for (const auto& [x, y] : *points) {
        max_step = std::max(max_step, x);
        low = std::min(low, y);
        high = std::max(high, y);
      }
    }
  }
  if (high <= low) high = low + 1;
  constexpr double kW = 640, kH = 360, kLeft = 56, kRight = 150, kTop = 20, kBottom = 40;
  const auto px = [&](double x) { return kLeft + x / max_step * (kW - kLeft - kRight); };
  const auto py = [&](double y) {
    return kTop + (high - y) / (high - low) * (kH - kTop - kBottom);
  };
  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n",
      kW, kH);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n",
                     kLeft, kTop, kH - kBottom);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n",
                     kLeft, kH - kBottom, kW - kRight);
  for (int t = 0; t <= 4; ++t) {
    const double y = low + (high - low) * t / 4;
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.2f}</text>\n", kLeft - 4,
                       py(y) + 4, y);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">step {:.0f}</text>\n",
                     kW - kRight, kH - kBottom + 16, max_step);
  svg += fmt::format("<text x=\"{}\" y=\"{}\">loss</text>\n", 4, kTop - 6);
  int k = 0;
  for (const auto& [name, s] : series) {
    const char* colour = colours[k % 4];
    std::string points;
    for (const auto& [x, y] : s.train) points += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1\" points=\"{}\"/>\n",
                       colour, points);
    for (const auto& [x, y] : s.validation) {
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"/>\n", px(x),
                         py(y), colour);
    }
    svg += fmt::format(
        "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}: training (line), validation (dots)</text>\n",
        kW - kRight + 8, kTop + 16 * (k + 1), colour, name);
    ++k;
  }
  return svg + "</svg>\n";
}

// The base model with room for each adapter, its tokenizer, and the
// greedy settings every answer shares.
struct EvalModel {
  models::LlamaForCausalLM model;
  std::unique_ptr<models::Tokenizer> tokenizer;
  models::ChatFamily family;
  models::GenerationOptions generation;
};

EvalModel load_eval_model(const TrainConfig& config, const EvalOptions& options) {
  const fs::path base(config.base_model);
  EvalModel m{models::load_llama(base, config.device, models::WeightLayout::kPacked,
                                 models::parse_base_dtype(config.base_dtype),
                                 models::loading_bar("loading " + base.string(), options.progress)),
              models::load_tokenizer(base),
              models::detect_chat_family(base),
              {}};
  m.generation.max_new_tokens = options.max_new_tokens;
  m.generation.repetition_penalty = options.repetition_penalty;
  m.generation.stop_strings = models::chat_stop_strings(m.family);
  return m;
}

struct Answers {
  std::vector<std::string> base, tuned;         // one per item, in order
  int64_t base_stopped = 0, tuned_stopped = 0;  // answers that ended by themselves
};

// The base model's and adapter `slot`'s answers to the items, each prompt
// asked of both in the same batch. Both stop at the adapter's end token
// too: it is the one the base learnt.
Answers answer_items(EvalModel& m, const TaskPrompter& prompter, int slot,
                     const std::vector<Item>& items, const EvalOptions& options,
                     const std::string& label) {
  models::GenerationOptions generation = m.generation;
  generation.eos_ids = prompts::stop_ids(prompter.format(), *m.tokenizer);
  Answers out;
  Progress progress({.label = label,
                     .total_bytes = static_cast<uint64_t>(items.size()),
                     .enabled = options.progress,
                     .steps = true});
  for (size_t i = 0; i < items.size(); i += static_cast<size_t>(options.batch_size)) {
    std::vector<models::BatchRequest> requests;
    const size_t end = std::min(items.size(), i + static_cast<size_t>(options.batch_size));
    for (size_t k = i; k < end; ++k) {
      const std::string prompt =
          models::render_chat_prompt(m.family, prompter.turn(items[k].uid, items[k].input));
      const auto ids32 = m.tokenizer->encode(prompt, /*add_bos=*/true);
      const std::vector<int64_t> ids(ids32.begin(), ids32.end());
      requests.push_back({ids, -1});    // base
      requests.push_back({ids, slot});  // tuned, in the same forward
    }
    const auto answers = models::generate_batch(m.model, *m.tokenizer, requests, generation);
    for (size_t k = i; k < end; ++k) {
      const models::GenerationResult& base = answers[2 * (k - i)];
      const models::GenerationResult& tuned = answers[2 * (k - i) + 1];
      // An answer starts at its first word (the first piece may carry the
      // space it has after the prompt), as the daemon's do.
      out.base.emplace_back(trim_start(base.text));
      out.tuned.emplace_back(trim_start(tuned.text));
      out.base_stopped += base.finish_reason == "stop";
      out.tuned_stopped += tuned.finish_reason == "stop";
    }
    progress.update(end, end);
  }
  progress.finish();
  return out;
}

// The mean faithfulness of `texts` (one per item) to their products'
// descriptions, over the texts that have content words.
double mean_faithfulness(const std::vector<Item>& items, const std::vector<std::string>& texts,
                         const ProductTexts& products) {
  double sum = 0;
  int64_t counted = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    const auto product = products.find(items[k].uid);
    if (product == products.end()) continue;
    if (const std::optional<double> f = faithfulness(texts[k], product->second.description)) {
      sum += *f;
      ++counted;
    }
  }
  return counted > 0 ? sum / static_cast<double>(counted) : 0;
}

// ROUGE and lengths (means over the items), corpus BLEU, and the first
// examples side by side.
void score_answers(const std::vector<Item>& items, const Answers& answers,
                   const EvalOptions& options, SplitResult& r) {
  std::vector<std::string> references;
  for (size_t k = 0; k < items.size(); ++k) {
    const std::string& reference = items[k].reference;
    references.push_back(reference);
    const RougeScores b = rouge(reference, answers.base[k]);
    const RougeScores t = rouge(reference, answers.tuned[k]);
    r.base.rouge1 += b.rouge1;
    r.base.rouge2 += b.rouge2;
    r.base.rougeL += b.rougeL;
    r.tuned.rouge1 += t.rouge1;
    r.tuned.rouge2 += t.rouge2;
    r.tuned.rougeL += t.rougeL;
    r.base.mean_words += words(answers.base[k]);
    r.tuned.mean_words += words(answers.tuned[k]);
    r.reference_mean_words += words(reference);
    if (static_cast<int64_t>(r.samples.size()) < options.examples_in_report) {
      r.samples.push_back({items[k].input, reference, answers.base[k], answers.tuned[k]});
    }
  }
  const double n = static_cast<double>(items.size());
  r.base.stopped_share = static_cast<double>(answers.base_stopped) / n;
  r.tuned.stopped_share = static_cast<double>(answers.tuned_stopped) / n;
  for (ModelScores* s : {&r.base, &r.tuned}) {
    s->rouge1 /= n;
    s->rouge2 /= n;
    s->rougeL /= n;
    s->mean_words /= n;
  }
  r.reference_mean_words /= n;
  r.base.bleu = corpus_bleu(answers.base, references).score;
  r.tuned.bleu = corpus_bleu(answers.tuned, references).score;
}

// qa answers' faithfulness to the products' descriptions, and the
// references' own.
void score_faithfulness(const std::vector<Item>& items, const Answers& answers,
                        const ProductTexts& products, SplitResult& r) {
  std::vector<std::string> references;
  for (const Item& item : items) references.push_back(item.reference);
  r.reference_faithfulness = mean_faithfulness(items, references, products);
  r.base.faithfulness = mean_faithfulness(items, answers.base, products);
  r.tuned.faithfulness = mean_faithfulness(items, answers.tuned, products);
}

// One adapter on one split (test or train): nothing when the split is
// empty or not asked for. The adapter's prompt format (as it recorded it,
// else as the config says) asks both models.
std::optional<SplitResult> evaluate_split(EvalModel& m, const TrainConfig& config,
                                          const std::string& name, int slot,
                                          const fs::path& adapter_dir, const std::string& split,
                                          int64_t limit, const EvalOptions& options) {
  if (limit <= 0) return std::nullopt;
  const AdapterTrainConfig& ac = config.adapters.at(name);
  const prompts::PromptFormat format = fs::exists(adapter_dir / prompts::kPromptFormatFile)
                                           ? prompts::read_prompt_format(adapter_dir)
                                           : prompt_format_of(ac);
  const prompts::Task task = format.task;
  const fs::path file = fs::path(config.dataset) / "tasks" / std::string(prompts::task_name(task)) /
                        (split + ".jsonl");
  // qa: the split's products, for grounded prompts and faithfulness.
  std::shared_ptr<const ProductTexts> products;
  if (task == prompts::Task::kQa) {
    products = std::make_shared<const ProductTexts>(
        read_product_texts(product_texts_file(config.dataset, split)));
  }
  const TaskPrompter prompter(format, products);
  const std::vector<Item> items = read_items(file, task, limit);
  if (items.empty()) return std::nullopt;
  SplitResult r;
  r.adapter = name;
  r.task = std::string(prompts::task_name(task));
  r.split = split;
  r.grounding = std::string(prompts::grounding_name(format.qa.grounding));
  r.examples = static_cast<int64_t>(items.size());
  const Answers answers =
      answer_items(m, prompter, slot, items, options, fmt::format("eval {} {}", name, split));
  score_answers(items, answers, options, r);
  if (products) score_faithfulness(items, answers, *products, r);
  // Perplexity of whole references where the model's context allows,
  // not only of the part training saw.
  const int64_t context = std::max<int64_t>(
      ac.max_seq_len, std::min<int64_t>(m.model->config().max_position_embeddings, 1024));
  const ExampleSet examples = load_examples(file, prompter, *m.tokenizer, m.family, context, limit);
  r.base.perplexity = perplexity(m.model, examples.examples, -1, context, ac.batch_size);
  r.tuned.perplexity = perplexity(m.model, examples.examples, slot, context, ac.batch_size);
  return r;
}

// eval/report.json, report.md and (when the run logged any) loss_curves.svg.
void write_report(const fs::path& run_dir, const std::vector<SplitResult>& results,
                  const TrainConfig& config, const EvalOptions& options) {
  Json report = Json::array();
  for (const auto& r : results) {
    Json samples = Json::array();
    for (const auto& s : r.samples) {
      samples.push_back(
          {{"input", s.input}, {"reference", s.reference}, {"base", s.base}, {"tuned", s.tuned}});
    }
    report.push_back({{"adapter", r.adapter},
                      {"task", r.task},
                      {"split", r.split},
                      {"grounding", r.grounding},
                      {"examples", r.examples},
                      {"reference_mean_words", r.reference_mean_words},
                      {"reference_faithfulness", r.reference_faithfulness},
                      {"base", scores_json(r.base)},
                      {"tuned", scores_json(r.tuned)},
                      {"samples", samples}});
  }
  fs::create_directories(run_dir / "eval");
  write_file_atomic(run_dir / "eval" / "report.json",
                    Json{{"max_new_tokens", options.max_new_tokens},
                         {"repetition_penalty", options.repetition_penalty},
                         {"results", report},
                         {"qa_comparison", qa_comparison_json(results)}}
                            .dump(2) +
                        "\n");
  std::string md = render_markdown(results, config, options);
  const std::string svg = loss_curves_svg(run_dir / "metrics.jsonl");
  if (!svg.empty()) {
    write_file_atomic(run_dir / "eval" / "loss_curves.svg", svg);
    md += "## Loss curves\n\n![training and validation loss](loss_curves.svg)\n";
  }
  write_file_atomic(run_dir / "eval" / "report.md", md);
}

}  // namespace

std::string summary_line(const SplitResult& r) {
  std::string line = fmt::format(
      "{} {} ({} products): ROUGE-L {:.4f} -> {:.4f}, BLEU {:.2f} -> {:.2f}, perplexity {:.2f} -> "
      "{:.2f}, ended by themselves {:.0f} % -> {:.0f} %",
      r.adapter, r.split, r.examples, r.base.rougeL, r.tuned.rougeL, r.base.bleu, r.tuned.bleu,
      r.base.perplexity, r.tuned.perplexity, 100 * r.base.stopped_share,
      100 * r.tuned.stopped_share);
  if (r.task == "qa") {
    line += fmt::format(", grounding {}, faithfulness {:.2f} -> {:.2f}", r.grounding,
                        r.base.faithfulness, r.tuned.faithfulness);
  }
  return line;
}

std::vector<SplitResult> evaluate_run(const fs::path& run_dir, const EvalOptions& options) {
  std::ifstream config_in(run_dir / "config.json");
  if (!config_in) {
    throw std::runtime_error(
        fmt::format("'{}' is not a training run (no config.json)", run_dir.string()));
  }
  TrainConfig config = default_train_config();
  apply_train_config(nlohmann::json::parse(config_in), config);
  models::init_runtime({.threads = config.threads, .device = config.device});
  EvalModel m = load_eval_model(config, options);
  std::vector<SplitResult> results;
  int slot = 0;
  for (const auto& [name, ac] : config.adapters) {
    const fs::path adapter_dir = run_dir / "adapters" / name;
    if (!fs::exists(adapter_dir / "adapter_config.json")) continue;  // not trained (yet)
    models::attach_adapter(m.model, models::load_peft_adapter(adapter_dir), slot);
    for (const auto& [split, limit] :
         {std::pair<std::string, int64_t>{"test", options.test_examples},
          {"train", options.train_examples}}) {
      std::optional<SplitResult> r =
          evaluate_split(m, config, name, slot, adapter_dir, split, limit, options);
      if (r) results.push_back(std::move(*r));
    }
    ++slot;
  }
  write_report(run_dir, results, config, options);
  return results;
}

}  // namespace vitrine::training
