#include "models/lora.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <stdexcept>

namespace vitrine::models {

LoraLinearImpl::LoraLinearImpl(int64_t in_features, int64_t out_features, bool has_bias) {
  weight =
      register_parameter("weight", at::empty({out_features, in_features}), /*requires_grad=*/false);
  if (has_bias)
    bias = register_parameter("bias", at::zeros({out_features}), /*requires_grad=*/false);
}

at::Tensor LoraLinearImpl::forward(const at::Tensor& x, const RowAdapters& rows) {
  at::Tensor y = at::linear(x, weight, bias);  // [batch, seq, out]
  if (adapters_.empty() || rows.empty()) return y;
  if (static_cast<int64_t>(rows.size()) != x.size(0)) {
    throw std::invalid_argument(
        fmt::format("LoRA: {} row adapters for a batch of {}", rows.size(), x.size(0)));
  }
  // Rows that share an adapter go through it together.
  for (const auto& [slot, w] : adapters_) {
    std::vector<int64_t> idx;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i] == slot) idx.push_back(static_cast<int64_t>(i));
    }
    if (idx.empty()) continue;
    if (static_cast<int64_t>(idx.size()) == x.size(0)) {
      y = y + at::linear(at::linear(x, w.a), w.b) * w.scaling;  // [batch, seq, out]
    } else {
      const at::Tensor index =
          at::tensor(idx, at::TensorOptions().dtype(at::kLong).device(x.device()));
      const at::Tensor xs = x.index_select(0, index);                             // [k, seq, in]
      const at::Tensor delta = at::linear(at::linear(xs, w.a), w.b) * w.scaling;  // [k, seq, out]
      y = y.index_add(0, index, delta);
    }
  }
  return y;
}

void LoraLinearImpl::set_adapter(int slot, LoraWeights w) {
  const int64_t out = weight.size(0), in = weight.size(1);
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
}

void LoraLinearImpl::remove_adapter(int slot) {
  adapters_.erase(slot);
}

at::Tensor LoraLinearImpl::merged_weight(int slot) const {
  const LoraWeights& w = adapters_.at(slot);
  return weight + at::matmul(w.b, w.a) * w.scaling;  // [out, in]
}

}  // namespace vitrine::models
