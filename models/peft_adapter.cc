#include "models/peft_adapter.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "common/atomic_output.h"
#include "models/safetensors.h"

namespace vitrine::models {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kPrefix = "base_model.model.";

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
  throw std::runtime_error(fmt::format("adapter '{}': {}", file.string(), what));
}

}  // namespace

PeftAdapter load_peft_adapter(const fs::path& dir) {
  const fs::path config_path = dir / "adapter_config.json";
  std::ifstream in(config_path);
  if (!in) fail(config_path, "cannot read (not a PEFT adapter directory?)");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  PeftAdapter adapter;
  adapter.config = parse_peft_config(text, config_path);
  const PeftAdapterConfig& c = adapter.config;

  const fs::path weights_path = dir / "adapter_model.safetensors";
  if (!fs::exists(weights_path) && fs::exists(dir / "adapter_model.bin")) {
    fail(dir / "adapter_model.bin",
         "PyTorch pickle adapters (.bin) are not read (loading a pickle runs code); convert it "
         "once with PEFT: PeftModel.from_pretrained(base, dir).save_pretrained(out, "
         "safe_serialization=True) writes adapter_model.safetensors");
  }
  const SafetensorsFile file = SafetensorsFile::open(weights_path);
  for (const auto& name : file.names()) {
    const bool is_a = name.ends_with(".lora_A.weight"), is_b = name.ends_with(".lora_B.weight");
    if (name.rfind(kPrefix, 0) != 0 || !(is_a || is_b)) {
      fail(weights_path, fmt::format("unexpected tensor '{}' (a LoRA adapter holds only "
                                     "base_model.model.<module>.lora_A/lora_B.weight)",
                                     name));
    }
    std::string path = name.substr(
        kPrefix.size(), name.size() - kPrefix.size() - std::string(".lora_A.weight").size());
    if (path.ends_with(".default")) path.resize(path.size() - std::string(".default").size());
    LoraWeights& w = adapter.modules[path];
    (is_a ? w.a : w.b) = file.get(name).clone();
    require_finite(is_a ? w.a : w.b, name, weights_path);
    w.scaling = c.scaling();
  }
  for (const auto& [path, w] : adapter.modules) {
    if (!w.a.defined() || !w.b.defined())
      fail(weights_path, fmt::format("module '{}' lacks lora_A or lora_B", path));
    if (w.a.size(0) != c.r || w.b.size(1) != c.r) {
      fail(weights_path,
           fmt::format("module '{}' has rank {} / {}, adapter_config.json says r = {}", path,
                       w.a.size(0), w.b.size(1), c.r));
    }
  }
  if (adapter.modules.empty()) fail(weights_path, "no LoRA tensors");
  return adapter;
}

void save_peft_adapter(const fs::path& dir, const PeftAdapter& adapter) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [path, w] : adapter.modules) {
    tensors.emplace_back(std::string(kPrefix) + path + ".lora_A.weight", w.a.contiguous());
    tensors.emplace_back(std::string(kPrefix) + path + ".lora_B.weight", w.b.contiguous());
  }
  save_safetensors(dir / "adapter_model.safetensors", tensors);
  write_file_atomic(dir / "adapter_config.json", peft_config_json(adapter.config));
}

void attach_adapter(LlamaForCausalLM& model, const PeftAdapter& adapter, int slot) {
  std::map<std::string, LoraLinear> by_path;
  for (auto& [path, module] : model->projections()) by_path.emplace(path, module);
  // Check everything first, so a bad adapter leaves the model untouched.
  for (const auto& [path, w] : adapter.modules) {
    const auto it = by_path.find(path);
    if (it == by_path.end()) {
      throw std::runtime_error(fmt::format(
          "adapter module '{}' not in the base model: adapter for another base?", path));
    }
    const int64_t out = it->second->out_features(), in = it->second->in_features();
    if (w.a.size(1) != in || w.b.size(0) != out) {
      throw std::runtime_error(fmt::format(
          "adapter module '{}' has A {} and B {}, the base weight is [{}, {}]: adapter for another "
          "base?",
          path, c10::str(w.a.sizes()), c10::str(w.b.sizes()), out, in));
    }
  }
  for (auto& [path, module] : by_path) {
    const auto it = adapter.modules.find(path);
    if (it == adapter.modules.end()) {
      module->remove_adapter(slot);
    } else {
      module->set_adapter(slot, it->second);
    }
  }
}

PeftAdapter extract_adapter(LlamaForCausalLM& model, int slot, const PeftAdapterConfig& config) {
  PeftAdapter adapter;
  adapter.config = config;
  for (auto& [path, module] : model->projections()) {
    if (module->has_adapter(slot)) adapter.modules[path] = module->adapter(slot);
  }
  return adapter;
}

void detach_adapter(LlamaForCausalLM& model, int slot) {
  for (auto& [path, module] : model->projections()) {
    if (module->has_adapter(slot)) module->remove_adapter(slot);
  }
}

void merge_adapter(LlamaForCausalLM& model, int slot) {
  if (model->packed()) {
    throw std::logic_error(
        "merge_adapter: the model is packed for inference; merge into a model loaded with "
        "WeightLayout::kCheckpoint");
  }
  at::NoGradGuard no_grad;
  for (auto& [path, module] : model->projections()) {
    if (!module->has_adapter(slot)) continue;
    if (module->packed_bf16()) {  // merged in float32, rounded back to bf16 as PEFT does
      module->use_packed_bf16(pack_weight_bf16(module->merged_weight(slot)), module->bf16_path());
    } else {
      module->weight.copy_(module->merged_weight(slot));
    }
    module->remove_adapter(slot);
  }
}

}  // namespace vitrine::models
