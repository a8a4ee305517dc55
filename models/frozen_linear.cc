#include "models/frozen_linear.h"

#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

namespace vitrine::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FrozenBf16Product : torch::autograd::Function<FrozenBf16Product> {
  // The bias comes by pointer: a frozen tensor, not an input of the graph
  // (autograd refuses undefined tensors among the inputs).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const PackedWeightBf16& w,
                            const at::Tensor* bias, Bf16Path path) {
    // The weight's panels go into the context as a tensor (a reference to
    // the same storage), its shape beside them.
    ctx->saved_data["pairs"] = w.pairs;
    ctx->saved_data["out"] = w.out_features;
    ctx->saved_data["in"] = w.in_features;
    ctx->saved_data["path"] = static_cast<int64_t>(path);
    return packed_linear_bf16(x, w, *bias, path);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const PackedWeightBf16 w{.pairs = ctx->saved_data["pairs"].toTensor(),
                             .out_features = ctx->saved_data["out"].toInt(),
                             .in_features = ctx->saved_data["in"].toInt()};
    const at::Tensor dy = grad_outputs[0].contiguous();
    const auto path = static_cast<Bf16Path>(ctx->saved_data["path"].toInt());
    // One gradient per argument of forward: only x has one.
    return {packed_linear_bf16_backward_data(dy, w, path), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor frozen_bf16_linear(const at::Tensor& x, const PackedWeightBf16& w,
                              const at::Tensor& bias, Bf16Path path) {
  if (!(c10::GradMode::is_enabled() && x.requires_grad())) {
    return packed_linear_bf16(x, w, bias, path);
  }
  return FrozenBf16Product::apply(x, w, &bias, path);
}

}  // namespace vitrine::models
