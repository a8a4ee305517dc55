// A linear layer with a frozen base weight and any number of named LoRA
// adapters, applied per row: y = x·Wᵀ + b + scaling·(x·Aᵀ)·Bᵀ.
//
// Serving never merges: one batch may mix rows with different adapters and
// rows with none (the S-LoRA / Punica idea), so the daemon runs describe, qa
// and base requests in one forward. Parameter names follow Hugging Face
// ("weight", "bias") so a module's state_dict is the checkpoint's.
// The frozen base may be float32 ([out, in] or packed panels), packed bf16
// or packed int8 (serving); the adapters are float32 whatever the base.
// Not goals: quantized adapters, DoRA, bias training.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <string>
#include <vector>

#include "models/kernels/packed_linear.h"
#include "models/kernels/packed_linear_bf16.h"
#include "models/kernels/packed_linear_int8.h"

namespace vitrine::models {

// Which adapter each row of a batch uses: slot indices from
// LoraLinearImpl::adapter_slot(), -1 = base only. Empty = every row base.
using RowAdapters = std::vector<int>;

struct LoraWeights {
  at::Tensor a;          // lora_A [r, in]
  at::Tensor b;          // lora_B [out, r]
  double scaling = 1.0;  // lora_alpha / r (or / sqrt(r) for rsLoRA)
  double dropout = 0.0;  // on x before A, in training mode only (as PEFT)
};

class LoraLinearImpl : public torch::nn::Module {
 public:
  LoraLinearImpl(int64_t in_features, int64_t out_features, bool bias);

  // x: [batch, seq, in] -> [batch, seq, out]; `rows` has `batch` entries or is empty.
  at::Tensor forward(const at::Tensor& x, const RowAdapters& rows = {});

  // Installs (or replaces) adapter `slot`. Shapes are checked against the
  // base. Mixed batches read a stacked copy made here: change an adapter's
  // weights through set_adapter, not in place (training, whose batches use
  // one adapter, reads the tensors given here directly).
  void set_adapter(int slot, LoraWeights weights);
  void remove_adapter(int slot);
  bool has_adapter(int slot) const { return adapters_.count(slot) != 0; }
  const LoraWeights& adapter(int slot) const { return adapters_.at(slot); }
  // W + scaling·B·A, for merging into a checkpoint.
  at::Tensor merged_weight(int slot) const;

  // For inference on the CPU: runs on these panels of the base weight (see
  // pack_weight; load_llama packs as it reads) and releases the [out, in]
  // copy, which `weight` then no longer holds (it is empty). The products
  // run on packed_linear from then on, for any number of rows; autograd
  // through them is refused.
  void use_packed(PackedWeight panels);
  bool packed() const { return packed_.defined(); }
  // The frozen base as packed bfloat16 (pack_weight_bf16), for training and
  // inference alike: the products run on packed_linear_bf16 by `path`, and
  // autograd gets the input's gradient from the same copy
  // (frozen_bf16_linear). `weight` is emptied as by use_packed.
  void use_packed_bf16(PackedWeightBf16 pairs, Bf16Path path);
  bool packed_bf16() const { return packed_bf16_.defined(); }
  const PackedWeightBf16& bf16_weight() const { return packed_bf16_; }
  Bf16Path bf16_path() const { return bf16_path_; }
  void set_bf16_path(Bf16Path path) { bf16_path_ = path; }
  // The frozen base as int8 panels with a scale per output
  // (quantize_weight_int8), for serving: the products run on
  // packed_linear_int8; autograd through them is refused. `weight` is
  // emptied as by use_packed.
  void use_packed_int8(PackedWeightInt8 panels);
  bool packed_int8() const { return packed_int8_.defined(); }
  // The base weight [out, in] as float32, whatever its layout: a copy when
  // packed (merging, saving, checks; an int8 base's dequantized values).
  at::Tensor base_weight() const;
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  at::Tensor weight;  // [out, in], frozen; empty once packed
  at::Tensor bias;    // [out] or undefined

 private:
  // x·Wᵀ + b, from the panels once packed.
  at::Tensor base_forward(const at::Tensor& x) const;

  // Rebuilds the stacked matrices below from adapters_.
  void restack();

  int64_t in_features_, out_features_;
  PackedWeight packed_;
  PackedWeightBf16 packed_bf16_;
  PackedWeightInt8 packed_int8_;
  Bf16Path bf16_path_ = Bf16Path::kExact;
  std::map<int, LoraWeights> adapters_;
  // Every adapter side by side, for batches that mix them: A of all slots
  // stacked [Σr, in], B·scaling of all slots [out, Σr], and the slot owning
  // each of the Σr columns. One pair of products then serves every row,
  // each row keeping only its own slot's columns.
  at::Tensor stacked_a_, stacked_b_, column_slot_;
  // column_slot_ on the host, for masking decode steps in place.
  std::vector<int> column_owner_;
};
TORCH_MODULE(LoraLinear);

}  // namespace vitrine::models
