// load_llama: a Hugging Face checkpoint into a LlamaForCausalLM, each
// weight straight from the mapped file into its final place and format
// (float32, packed float32 panels, bf16 pairs or int8 panels), all of
// them in one buffer on huge pages.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>

#include "common/progress.h"
#include "models/checkpoint_weights.h"
#include "models/kernels/packed_linear.h"
#include "models/llama.h"
#include "models/runtime.h"
#include "models/safetensors.h"

namespace vitrine::models {
namespace fs = std::filesystem;
namespace {

// One buffer for every weight of a model, on transparent huge pages where
// the kernel offers them (madvise mode): a decode step streams all weights,
// and with 4 kB pages the page-table walks of that stream cost a visible
// share of the step. Where huge pages are unavailable the buffer is
// ordinary memory. Slices are handed out in order, each 64-byte aligned.
class WeightArena {
 public:
  static constexpr int64_t kAlign = 16;  // floats

  static int64_t aligned(int64_t floats) { return (floats + kAlign - 1) / kAlign * kAlign; }

  explicit WeightArena(int64_t floats) {
    constexpr int64_t kHuge = int64_t{2} << 20;
    const int64_t bytes =
        (std::max<int64_t>(floats, 1) * static_cast<int64_t>(sizeof(float)) + kHuge - 1) / kHuge *
        kHuge;
    void* raw = std::aligned_alloc(static_cast<size_t>(kHuge), static_cast<size_t>(bytes));
    if (raw == nullptr) {
      throw std::runtime_error(
          fmt::format("cannot allocate {} MiB for the model's weights", bytes >> 20));
    }
    ::madvise(raw, static_cast<size_t>(bytes), MADV_HUGEPAGE);
    buffer_ = at::from_blob(
        raw, {bytes / static_cast<int64_t>(sizeof(float))}, [](void* p) { std::free(p); },
        at::TensorOptions().dtype(at::kFloat));
  }

  at::Tensor take(int64_t floats) {
    at::Tensor slice = buffer_.narrow(0, offset_, floats);
    offset_ += aligned(floats);
    return slice;
  }

  // `count` bfloat16 values: a slice of the same buffer, which it keeps alive.
  at::Tensor take_bf16(int64_t count) {
    const at::Tensor slice = take(bf16_floats(count));
    return at::from_blob(
        slice.data_ptr(), {count}, [keep = slice](void*) {},
        at::TensorOptions().dtype(at::kBFloat16));
  }
  static int64_t bf16_floats(int64_t count) { return (count + 1) / 2; }

  // `count` int8 values, as take_bf16.
  at::Tensor take_int8(int64_t count) {
    const at::Tensor slice = take(int8_floats(count));
    return at::from_blob(
        slice.data_ptr(), {count}, [keep = slice](void*) {}, at::TensorOptions().dtype(at::kChar));
  }
  static int64_t int8_floats(int64_t count) { return (count + 3) / 4; }

 private:
  at::Tensor buffer_;
  int64_t offset_ = 0;
};

// Where load_llama puts each weight.
struct WeightPlan {
  bool pack = false;  // projections and head as packed_linear panels (float32)
  bool bf16 = false;  // projections and head as bf16 pairs, the embedding bf16
  bool int8 = false;  // projections and head as int8 panels, the embedding bf16
  Bf16Path bf16_path = Bf16Path::kExact;
  std::map<std::string, LoraLinear> packed_projections;  // by weight name
  // The head's weight: lm_head's, or with tied embeddings the embedding
  // table, which is then read from the panels too (embed()).
  std::string head_name;

  bool packs_head() const { return pack || bf16 || int8; }
  bool bf16_embedding() const { return bf16 || int8; }
};

WeightPlan plan_weights(LlamaForCausalLM& model, bool pack, BaseDtype dtype, Bf16Path path) {
  WeightPlan plan;
  plan.bf16 = dtype == BaseDtype::kBf16;
  plan.int8 = dtype == BaseDtype::kInt8;
  plan.pack = pack && !plan.bf16 && !plan.int8;
  plan.bf16_path = path;
  plan.head_name =
      model->config().tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  if (plan.packs_head()) {
    for (auto& [path_name, module] : model->projections()) {
      plan.packed_projections.emplace(path_name + ".weight", module);
    }
  }
  return plan;
}

constexpr const char* kEmbeddingName = "model.embed_tokens.weight";

// Floats of the arena holding every weight as `plan` lays it out.
int64_t arena_floats(LlamaForCausalLM& model, const WeightPlan& plan) {
  int64_t floats = 0;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    const bool panels = plan.packed_projections.count(item.key()) != 0 ||
                        (plan.packs_head() && item.key() == plan.head_name);
    const at::Tensor& p = item.value();
    int64_t n = p.numel();
    if (panels && plan.bf16) {
      n = WeightArena::bf16_floats(packed_bf16_numel(p.size(0), p.size(1)));
    } else if (panels && plan.int8) {
      n = WeightArena::int8_floats(packed_int8_bytes(p.size(0), p.size(1)));
      floats += WeightArena::aligned(packed_int8_scale_count(p.size(0)));
    } else if (panels) {
      n = packed_numel(p.size(0), p.size(1));
    } else if (plan.bf16_embedding() && item.key() == kEmbeddingName) {
      n = WeightArena::bf16_floats(p.numel());
    }
    floats += WeightArena::aligned(n);
  }
  return floats;
}

// The checkpoint's tensor for parameter `name`, checked against it, in its
// stored dtype (a view of the mapped file).
at::Tensor checkpoint_tensor(const CheckpointWeights& weights, const std::string& name,
                             const at::Tensor& param) {
  if (!weights.contains(name)) {
    throw std::runtime_error(
        fmt::format("tensor '{}' missing from '{}': a checkpoint of another architecture?", name,
                    weights.source().string()));
  }
  const at::Tensor t = weights.stored(name);
  if (t.sizes() != param.sizes()) {
    throw std::runtime_error(fmt::format("tensor '{}' in '{}' has shape {}, config.json implies {}",
                                         name, weights.file_of(name).string(), c10::str(t.sizes()),
                                         c10::str(param.sizes())));
  }
  return t;
}

// [out, in] as packed_linear panels in the arena; the float32 copy made for
// packing is not kept.
PackedWeight pack_into(const at::Tensor& stored, const std::string& name, const fs::path& file,
                       WeightArena& arena) {
  const at::Tensor w = stored.to(at::kFloat);
  require_finite(w, name, file);
  return pack_weight(w, arena.take(packed_numel(w.size(0), w.size(1))));
}

// [out, in] as bf16 pairs in the arena, packed straight from the stored
// tensor (a BF16 one bit for bit): no float32 copy.
PackedWeightBf16 pack_bf16_into(const at::Tensor& stored, const std::string& name,
                                const fs::path& file, WeightArena& arena) {
  require_finite(stored, name, file);
  return pack_weight_bf16(stored,
                          arena.take_bf16(packed_bf16_numel(stored.size(0), stored.size(1))));
}

// [out, in] quantized to int8 panels and scales in the arena, from the
// stored tensor in any dtype.
PackedWeightInt8 quantize_into(const at::Tensor& stored, const std::string& name,
                               const fs::path& file, WeightArena& arena) {
  const int64_t out = stored.size(0), in = stored.size(1);
  at::Tensor panels = arena.take_int8(packed_int8_bytes(out, in));
  try {
    // Quantizing checks finiteness in its own pass over the weight.
    return quantize_weight_int8(stored, panels, arena.take(packed_int8_scale_count(out)));
  } catch (const std::invalid_argument&) {
    require_finite(stored, name, file);  // the error names the tensor and its file
    throw;
  }
}

// Fills parameter `name` from `stored`, converting to float32 on the way
// into its final place (no float32 temporary of a BF16/F16 weight).
void place_weight(LlamaForCausalLM& model, const WeightPlan& plan, WeightArena* arena,
                  const std::string& name, at::Tensor& param, const at::Tensor& stored,
                  const fs::path& file) {
  if (const auto it = plan.packed_projections.find(name); it != plan.packed_projections.end()) {
    LoraLinear projection = it->second;  // a handle: the model's own module
    if (plan.bf16) {
      projection->use_packed_bf16(pack_bf16_into(stored, name, file, *arena), plan.bf16_path);
    } else if (plan.int8) {
      projection->use_packed_int8(quantize_into(stored, name, file, *arena));
    } else {
      projection->use_packed(pack_into(stored, name, file, *arena));
    }
  } else if (plan.packs_head() && name == plan.head_name) {
    if (plan.bf16) {
      model->use_bf16_head(pack_bf16_into(stored, name, file, *arena), plan.bf16_path);
    } else if (plan.int8) {
      model->use_int8_head(quantize_into(stored, name, file, *arena));
    } else {
      model->use_packed_head(pack_into(stored, name, file, *arena));
    }
    param.set_data(at::empty({0}, param.options()));
  } else if (plan.bf16_embedding() && name == kEmbeddingName) {
    at::Tensor slot = arena->take_bf16(stored.numel()).view(stored.sizes());
    slot.copy_(stored);  // float32 or float16 rounded to nearest even
    require_finite(slot, name, file);
    param.set_data(slot);
  } else if (arena != nullptr) {
    at::Tensor slot = arena->take(stored.numel()).view(stored.sizes());
    slot.copy_(stored);
    require_finite(slot, name, file);
    param.set_data(slot);
  } else {
    param.copy_(stored);
    require_finite(param, name, file);
  }
}

// Refuses a checkpoint tensor no parameter took, bar the ones transformers
// also skips: a tied lm_head and old checkpoints' RoPE buffers.
void refuse_unexpected(const CheckpointWeights& weights, const std::set<std::string>& used,
                       const LlamaConfig& config) {
  for (const auto& name : weights.names()) {
    if (used.count(name) == 0 && !(config.tie_word_embeddings && name == "lm_head.weight") &&
        name.find("rotary_emb.inv_freq") == std::string::npos) {
      throw std::runtime_error(
          fmt::format("unexpected tensor '{}' in '{}': config.json does not describe this "
                      "checkpoint",
                      name, weights.file_of(name).string()));
    }
  }
}

}  // namespace

BaseDtype parse_base_dtype(const std::string& name) {
  if (name == "auto") return BaseDtype::kAuto;
  if (name == "bf16") return BaseDtype::kBf16;
  if (name == "f32") return BaseDtype::kF32;
  if (name == "int8") return BaseDtype::kInt8;
  throw std::invalid_argument(fmt::format("weights '{}': expected auto, f32, bf16 or int8", name));
}

const char* base_dtype_name(BaseDtype dtype) {
  switch (dtype) {
    case BaseDtype::kAuto:
      return "auto";
    case BaseDtype::kBf16:
      return "bf16";
    case BaseDtype::kF32:
      return "f32";
    case BaseDtype::kInt8:
      return "int8";
  }
  return "?";
}

BaseDtype weights_of(const LlamaForCausalLM& model) {
  if (model->base_int8()) return BaseDtype::kInt8;
  return model->base_bf16() ? BaseDtype::kBf16 : BaseDtype::kF32;
}

namespace {

// resolve_base_dtype on weights already open.
BaseDtype resolve_for(BaseDtype dtype, const CheckpointWeights& weights,
                      const c10::Device& target) {
  if (dtype != BaseDtype::kAuto) return dtype;
  if (!target.is_cpu()) return BaseDtype::kF32;
  // The projections' stored dtype decides (norms are often kept in float32).
  const std::string probe = "model.layers.0.self_attn.q_proj.weight";
  if (!weights.contains(probe)) return BaseDtype::kF32;
  const SafetensorsDtype stored = weights.info(probe).dtype;
  return stored == SafetensorsDtype::kBF16 || stored == SafetensorsDtype::kF16 ? BaseDtype::kBf16
                                                                               : BaseDtype::kF32;
}

}  // namespace

BaseDtype resolve_base_dtype(BaseDtype dtype, const fs::path& dir, const std::string& device) {
  if (dtype != BaseDtype::kAuto) return dtype;
  return resolve_for(dtype, CheckpointWeights::open(dir), resolve_device(device));
}

LlamaForCausalLM load_llama(const fs::path& dir, const std::string& device, WeightLayout layout,
                            BaseDtype dtype, const LoadProgress& on_progress) {
  const c10::Device target = resolve_device(device);
  const LlamaConfig config = load_llama_config(dir / "config.json");
  const CheckpointWeights weights = CheckpointWeights::open(dir);
  dtype = resolve_for(dtype, weights, target);
  if ((dtype == BaseDtype::kBf16 || dtype == BaseDtype::kInt8) && !target.is_cpu()) {
    throw std::invalid_argument(
        fmt::format("{} weights run on the CPU only (device '{}'): use f32 there",
                    base_dtype_name(dtype), device));
  }
  if (dtype == BaseDtype::kInt8 && layout != WeightLayout::kPacked) {
    throw std::invalid_argument(
        "int8 weights are for serving (WeightLayout::kPacked): train on a base in f32 or bf16");
  }
  LlamaForCausalLM model(config);
  at::NoGradGuard no_grad;
  const WeightPlan plan =
      plan_weights(model, layout == WeightLayout::kPacked && target.is_cpu(), dtype,
                   layout == WeightLayout::kPacked ? Bf16Path::kFast : Bf16Path::kExact);
  // On the CPU every weight goes into one arena, the packed ones as panels
  // (their [out, in] parameters stay empty); elsewhere into the parameters.
  std::optional<WeightArena> arena;
  if (target.is_cpu()) arena.emplace(arena_floats(model, plan));
  const auto stored_bytes = [&](const std::string& name) -> uint64_t {
    if (!weights.contains(name)) return 0;
    const SafetensorsTensorInfo& info = weights.info(name);
    return info.end - info.begin;
  };
  uint64_t total = 0, done = 0;
  if (on_progress) {
    for (const auto& item : model->named_parameters(/*recurse=*/true))
      total += stored_bytes(item.key());
  }
  std::set<std::string> used;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    const at::Tensor stored = checkpoint_tensor(weights, item.key(), item.value());
    place_weight(model, plan, arena ? &*arena : nullptr, item.key(), item.value(), stored,
                 weights.file_of(item.key()));
    // Copied or packed: its file pages need not stay in this process.
    weights.release(item.key());
    used.insert(item.key());
    if (on_progress) on_progress(done += stored_bytes(item.key()), total);
  }
  refuse_unexpected(weights, used, config);
  // The per-weight temporaries (float32 copies made for packing) are free
  // now; hand what the allocator keeps of them back to the system.
  ::malloc_trim(0);
  if (!target.is_cpu()) model->to(target);
  model->eval();
  return model;
}

LoadProgress loading_bar(std::string label, bool enabled) {
  if (!enabled) return {};
  // Made at the first call, when the total is known; shared by the copies
  // std::function makes.
  struct Bar {
    std::unique_ptr<Progress> progress;
    uint64_t weights = 0;
  };
  auto bar = std::make_shared<Bar>();
  return [bar, label = std::move(label)](uint64_t done, uint64_t total) {
    if (total < kLoadBarMinBytes) return;
    if (!bar->progress) {
      bar->progress = std::make_unique<Progress>(
          ProgressOptions{.label = label, .total_bytes = total, .items = "weights"});
    }
    bar->progress->update(done, ++bar->weights);
    if (done >= total) bar->progress->finish();
  };
}

}  // namespace vitrine::models
