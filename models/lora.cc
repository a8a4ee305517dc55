#include "models/lora.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "models/frozen_linear.h"
#include "models/kernels/small_linear.h"
#include "models/training_ops.h"

namespace vitrine::models {

LoraLinearImpl::LoraLinearImpl(int64_t in_features, int64_t out_features, bool has_bias)
    : in_features_(in_features), out_features_(out_features) {
  weight =
      register_parameter("weight", at::empty({out_features, in_features}), /*requires_grad=*/false);
  if (has_bias)
    bias = register_parameter("bias", at::zeros({out_features}), /*requires_grad=*/false);
}

at::Tensor LoraLinearImpl::base_forward(const at::Tensor& x) const {
  if (packed_bf16()) return frozen_bf16_linear(x, packed_bf16_, bias, bf16_path_);
  if (!packed() && !packed_int8()) return fast_linear(x, weight, bias);
  if (c10::GradMode::is_enabled() && x.requires_grad()) {
    throw std::logic_error(
        "LoRA: gradients through a base weight packed for inference; train on a model loaded "
        "with WeightLayout::kCheckpoint (and base_dtype f32 or bf16)");
  }
  return packed_int8() ? packed_linear_int8(x, packed_int8_, bias)
                       : packed_linear(x, packed_, bias);
}

void LoraLinearImpl::use_packed_bf16(PackedWeightBf16 pairs, Bf16Path path) {
  if (pairs.out_features != out_features_ || pairs.in_features != in_features_) {
    throw std::invalid_argument(
        fmt::format("LoRA: bf16 pairs of a [{}, {}] weight for a [{}, {}] one", pairs.out_features,
                    pairs.in_features, out_features_, in_features_));
  }
  packed_bf16_ = std::move(pairs);
  bf16_path_ = path;
  at::NoGradGuard no_grad;
  weight.set_data(at::empty({0}, weight.options()));
}

void LoraLinearImpl::use_packed_int8(PackedWeightInt8 panels) {
  if (panels.out_features != out_features_ || panels.in_features != in_features_) {
    throw std::invalid_argument(
        fmt::format("LoRA: int8 panels of a [{}, {}] weight for a [{}, {}] one",
                    panels.out_features, panels.in_features, out_features_, in_features_));
  }
  packed_int8_ = std::move(panels);
  at::NoGradGuard no_grad;
  weight.set_data(at::empty({0}, weight.options()));
}

at::Tensor LoraLinearImpl::base_weight() const {
  if (packed_bf16()) return unpack_weight_bf16(packed_bf16_).to(at::kFloat);
  if (packed_int8()) return dequantize_weight_int8(packed_int8_);
  if (packed()) return unpack_weight(packed_);
  return weight;
}

void LoraLinearImpl::use_packed(PackedWeight panels) {
  if (panels.out_features != out_features_ || panels.in_features != in_features_) {
    throw std::invalid_argument(fmt::format("LoRA: panels of a [{}, {}] weight for a [{}, {}] one",
                                            panels.out_features, panels.in_features, out_features_,
                                            in_features_));
  }
  packed_ = std::move(panels);
  at::NoGradGuard no_grad;
  weight.set_data(at::empty({0}, weight.options()));
}

at::Tensor LoraLinearImpl::forward(const at::Tensor& x, const RowAdapters& rows) {
  at::Tensor y = base_forward(x);  // [batch, seq, out]
  if (adapters_.empty() || rows.empty()) return y;
  if (static_cast<int64_t>(rows.size()) != x.size(0)) {
    throw std::invalid_argument(
        fmt::format("LoRA: {} row adapters for a batch of {}", rows.size(), x.size(0)));
  }
  // Every row on the same adapter (always so in training): that adapter alone.
  if (std::all_of(rows.begin(), rows.end(), [&](int slot) { return slot == rows.front(); })) {
    const auto it = adapters_.find(rows.front());
    if (it == adapters_.end()) return y;
    const LoraWeights& w = it->second;
    RECORD_USER_SCOPE("vitrine::lora_adapter");
    const at::Tensor xd = w.dropout > 0 && is_training() ? dropout(x, w.dropout) : x;
    const at::Tensor h = fast_linear(xd, w.a);  // [batch, seq, r]
    if (is_training()) {
      // Training: y + scaling·h·Bᵀ in one product, without the passes (and
      // their backward) that scale h·Bᵀ and add it to y. (By the mode, not
      // by grad mode, so that a layer recomputed under activation
      // checkpointing computes what its forward did, bit for bit.)
      return at::addmm(y.reshape({-1, y.size(-1)}), h.reshape({-1, h.size(-1)}), w.b.t(), 1,
                       w.scaling)
          .view(y.sizes());
    }
    return y + fast_linear(h, w.b) * w.scaling;
  }
  // Mixed rows: all adapters in one pair of products, each row masked to its
  // own slot's columns (rows on the base or on a slot absent here keep none).
  if (small_linear_applies(x, stacked_a_)) {
    // Decode steps: the mask applied in place from the host copy of the
    // column owners, without building mask tensors in every projection.
    at::Tensor h = small_linear(x, stacked_a_, {});  // [batch, seq, Σr], contiguous
    const int64_t batch = x.size(0), per_row = h.numel() / batch, width = h.size(-1);
    float* hp = h.data_ptr<float>();
    for (int64_t i = 0; i < batch; ++i) {
      const int slot = rows[static_cast<size_t>(i)];
      for (int64_t j = 0; j < per_row; ++j) {
        if (column_owner_[static_cast<size_t>(j % width)] != slot) hp[i * per_row + j] = 0;
      }
    }
    return y.add_(fast_linear(h, stacked_b_));
  }
  const at::Tensor row_slot =
      at::tensor(std::vector<int64_t>(rows.begin(), rows.end()), column_slot_.options())
          .view({-1, 1});  // [batch, 1]
  const at::Tensor keep =
      (row_slot == column_slot_.view({1, -1})).to(x.scalar_type());     // [batch, Σr]
  const at::Tensor h = fast_linear(x, stacked_a_) * keep.unsqueeze(1);  // [batch, seq, Σr]
  return y + fast_linear(h, stacked_b_);
}

void LoraLinearImpl::restack() {
  if (adapters_.empty()) {
    stacked_a_ = stacked_b_ = column_slot_ = at::Tensor();
    column_owner_.clear();
    return;
  }
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> as, bs;
  std::vector<int64_t> owners;
  for (const auto& [slot, w] : adapters_) {
    as.push_back(w.a);
    bs.push_back(w.b * w.scaling);
    owners.insert(owners.end(), static_cast<size_t>(w.a.size(0)), slot);
  }
  stacked_a_ = at::cat(as, 0);  // [Σr, in]
  stacked_b_ = at::cat(bs, 1);  // [out, Σr]
  column_slot_ = at::tensor(owners, at::TensorOptions().dtype(at::kLong)).to(weight.device());
  column_owner_.assign(owners.begin(), owners.end());
}

void LoraLinearImpl::set_adapter(int slot, LoraWeights w) {
  const int64_t out = out_features_, in = in_features_;
  if (w.a.dim() != 2 || w.b.dim() != 2 || w.a.size(1) != in || w.b.size(0) != out ||
      w.a.size(0) != w.b.size(1)) {
    throw std::invalid_argument(
        fmt::format("LoRA shapes A {} and B {} do not fit a base weight [{}, {}]: adapter made for "
                    "another base?",
                    c10::str(w.a.sizes()), c10::str(w.b.sizes()), out, in));
  }
  w.a = w.a.to(weight.options());
  w.b = w.b.to(weight.options());
  adapters_[slot] = std::move(w);
  restack();
}

void LoraLinearImpl::remove_adapter(int slot) {
  adapters_.erase(slot);
  restack();
}

at::Tensor LoraLinearImpl::merged_weight(int slot) const {
  const LoraWeights& w = adapters_.at(slot);
  return base_weight() + at::matmul(w.b, w.a) * w.scaling;  // [out, in]
}

}  // namespace vitrine::models
