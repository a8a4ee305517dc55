// y = x·Wᵀ + b on weights packed for the CPU: the inference layout of every
// projection and of the head.
//
// A Hugging Face weight is [out, in], row after row. Packed, it is panels of
// 16 output features, [ceil(out / 16), in, 16]: for each input feature, the
// 16 weights of a panel sit side by side, so one vector load brings them and
// a row's input value, broadcast, multiplies them all. A kernel then keeps
// 3 panels × 8 rows of outputs in registers (AVX-512) and needs no
// horizontal sums: every multiply-add is useful work, and a decode step
// reads each weight once from memory whatever the batch. The same kernel
// serves prefill, its panels cached while blocks of 8 rows go by. (On this
// machine's AVX-512 cores, 512 rows run at 1.8x OpenBLAS's sgemm, whose
// Debian build uses 8-float kernels: docs/benchmarks.md.)
//
// Inference only: float32 tensors on the CPU, no autograd. Training keeps the
// [out, in] layout and BLAS, whose products autograd knows.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitrine::models {

inline constexpr int64_t kPanelWidth = 16;  // output features per panel

struct PackedWeight {
  at::Tensor panels;  // [ceil(out / 16), in, 16] float32; outputs past out_features are zero
  int64_t out_features = 0;
  int64_t in_features = 0;

  bool defined() const { return panels.defined(); }
};

// Whether w [out, in] can be packed: a 2-D float32 CPU tensor.
bool packing_applies(const at::Tensor& w);

// w [out, in] -> panels. `storage`, when given, is where the panels go: a
// float32 CPU tensor of at least packed_numel(out, in) elements (e.g. a slice
// of a huge-page arena); otherwise they get their own.
PackedWeight pack_weight(const at::Tensor& w, const at::Tensor& storage = {});
int64_t packed_numel(int64_t out_features, int64_t in_features);

// The [out, in] weight back, e.g. for merging an adapter into it.
at::Tensor unpack_weight(const PackedWeight& w);

// x [..., in] float32 CPU, bias [out] or undefined -> [..., out].
at::Tensor packed_linear(const at::Tensor& x, const PackedWeight& w, const at::Tensor& bias = {});

}  // namespace vitrine::models
